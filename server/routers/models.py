from __future__ import annotations

from collections.abc import Iterator

from fastapi import APIRouter, Request

from server.deps import CapabilitiesDep, EnginesDep
from server.errors import APIError
from server.schemas.models import ModelCard, ModelList
from server.selection import ALIAS_SEPARATOR, Capabilities, split_alias
from server.serving.common import lookup_engine

router = APIRouter(tags=["models"])


def _cards(model_id: str, engines: EnginesDep, capabilities: Capabilities,
           created: int) -> Iterator[ModelCard]:
    """The served model's card, then one per alias (`parent` names the model)."""
    info = engines[model_id].info
    strategies = capabilities.strategies(model_id)
    aliases = [f"{model_id}{ALIAS_SEPARATOR}{s}" for s in strategies]
    common = {"created": created, "root": info.root, "max_model_len": info.max_model_len,
              "role": info.role}
    yield ModelCard(id=model_id, strategies=strategies, aliases=aliases,
                    unavailable=capabilities.unavailable[model_id], **common)
    for strategy, alias in zip(strategies, aliases, strict=True):
        yield ModelCard(id=alias, parent=model_id, strategies=[strategy], **common)


@router.get("/v1/models", response_model=ModelList)
async def list_models(engines: EnginesDep, capabilities: CapabilitiesDep,
                      request: Request) -> ModelList:
    created = request.app.state.started
    return ModelList(data=[card for model_id in engines
                           for card in _cards(model_id, engines, capabilities, created)])


@router.get("/v1/models/{model_id:path}", response_model=ModelCard)
async def get_model(model_id: str, engines: EnginesDep, capabilities: CapabilitiesDep,
                    request: Request) -> ModelCard:
    served, strategy = split_alias(model_id, engines)
    lookup_engine(engines, served)
    cards = {card.id: card for card in _cards(served, engines, capabilities,
                                              request.app.state.started)}
    if model_id not in cards:
        raise APIError(404, f"The model {model_id!r} cannot serve {strategy!r}: "
                       f"{capabilities.unavailable[served].get(strategy or '', '')}",
                       param="model", code="model_not_found")
    return cards[model_id]
