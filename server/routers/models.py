from __future__ import annotations

from fastapi import APIRouter, Request

from server.deps import EnginesDep
from server.schemas.models import ModelCard, ModelList

router = APIRouter(tags=["models"])


def _card(engine, created: int) -> ModelCard:
    info = engine.info
    return ModelCard(id=info.model_id, created=created, root=info.root,
                     max_model_len=info.max_model_len, role=info.role)


@router.get("/v1/models", response_model=ModelList)
async def list_models(engines: EnginesDep, request: Request) -> ModelList:
    created = request.app.state.started
    return ModelList(data=[_card(engine, created) for engine in engines.values()])


@router.get("/v1/models/{model_id:path}", response_model=ModelCard)
async def get_model(model_id: str, engines: EnginesDep, request: Request) -> ModelCard:
    from server.serving.common import lookup_engine

    return _card(lookup_engine(engines, model_id), request.app.state.started)
