import subprocess
import sys


def test_runtime_imports_no_heavy_framework():
    code = (
        "import sys, zsclip, zsclip.predict, zsclip.cli, zsclip.evaluate, zsclip.classifier\n"
        "heavy = [m for m in ('torch', 'transformers', 'optimum', 'onnx') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
