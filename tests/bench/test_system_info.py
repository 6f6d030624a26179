"""CPU facts from /proc/cpuinfo text and version collection."""

from __future__ import annotations

from zsclip_bench.system_info import collect_system_info, read_cpuinfo

CPUINFO = """processor\t: 0
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse avx2 avx512f avx512_vnni amx_tile amx_int8
processor\t: 1
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse avx2 avx512f avx512_vnni amx_tile amx_int8
"""


def test_read_cpuinfo() -> None:
    info = read_cpuinfo(CPUINFO)
    assert info["model"] == "Intel(R) Xeon(R) Platinum 8480+"
    assert info["flags"]["avx512_vnni"] and info["flags"]["amx_int8"]
    assert not info["flags"]["avx_vnni"] and not info["flags"]["amx_bf16"]


def test_collect_system_info_has_versions() -> None:
    info = collect_system_info()
    assert info["python"].count(".") == 2
    assert info["packages"]["onnxruntime"] and info["packages"]["numpy"]
    assert "torch" in info["packages"]  # None when not installed
    assert info["cpu"]["usable_cpus"] >= 1
