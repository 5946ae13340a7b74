"""The benchmark's markdown tables: rows of different sections keep their own columns."""

import os
import platform

from clients.bench.report import machine, table


def test_rows_with_different_keys_get_one_column_each():
    rows = [{"strategy": "nudging", "ratio": 3.0891, "nudge_ratio": 0.5},
            {"strategy": "rain", "ratio": 40.0, "searches_per_set": 30}]
    lines = table(rows).splitlines()
    assert lines[0] == "| strategy | ratio | nudge_ratio | searches_per_set |"
    assert lines[2] == "| nudging | 3.09 | 0.5 |  |"
    assert lines[3] == "| rain | 40 |  | 30 |"


def test_the_machine_line_names_the_processor_and_its_vector_extensions(tmp_path):
    """Runs on machines with and without AVX-512 differ in speed and in bf16 numerics:
    the results say which one they came from."""
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Some CPU 9000\n"
                       "flags\t\t: fpu sse avx2 avx512f amx_bf16\n\nprocessor\t: 1\n")
    assert machine(cpuinfo).startswith("Some CPU 9000 (avx2 avx512f amx_bf16), ")
    cpuinfo.write_text("model name\t: Old CPU\nflags\t\t: fpu sse avx512_bf16\n")
    assert machine(cpuinfo).startswith("Old CPU (avx512_bf16), ")
    cpuinfo.write_text("processor\t: 0\nFeatures\t: fp asimd\n")  # no model, no x86 flags
    arm = machine(cpuinfo)
    assert "(" not in arm
    assert arm.endswith(f", {os.cpu_count()} cores, Python {platform.python_version()}")
    assert machine(tmp_path / "missing") == arm  # unreadable: the same fallback
