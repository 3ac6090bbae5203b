from setuptools import find_packages, setup

TEXT = ["open-clip-torch>=3.0"]
ONNX = ["onnx>=1.16", "onnxscript>=0.3", "onnxruntime>=1.18"]  # pe-dense export and its onnxruntime check

setup(
    name="pe-dense",
    version="0.1.0",
    description="Perception Encoder (PE-Spatial / PE-Core) backbones for dense prediction: "
                "Detectron2, MMSegmentation, video tracking",
    packages=find_packages(include=["pe_dense", "pe_dense.*"]),
    python_requires=">=3.9",
    install_requires=[
        "torch>=2.1",
        "numpy",
        "pillow",
        "safetensors",
        "huggingface_hub",
        "fvcore",
        "opencv-python-headless",
        "tqdm",
        "matplotlib",  # pe-dense probe's plots
    ],
    extras_require={
        # mmcv 2.1.0 has no wheel for torch 2.9: scripts/setup.sh builds it with its ops first (see README)
        # albumentations: the NYU configs' Albu (mmseg's own NYU pipeline)
        "mmseg": ["mmengine==0.10.7", "mmcv==2.1.0", "mmsegmentation==1.2.2", "ftfy", "regex", "albumentations"],
        # Detectron2 is not on PyPI: install it the official way (README), then this extra's parts: lvis for the LVIS
        # configs' evaluator and datasets, shapely for cropping polygons (the LSJ loader's FixedSizeCrop)
        "detectron2": ["pycocotools", "shapely", "lvis"],
        "onnx": ONNX,
        # PE-Core as CLIP (create_clip, pe-dense classify / segment): OpenCLIP's tokenizer (the BPE the released code
        # copies) and prompt templates; its PE-Core models are the tests' reference
        "text": TEXT,
        # the tests (two xdist workers, pytest.ini), their numerical reference (timm), and the linter CI runs first
        "dev": ["pytest", "pytest-xdist", "ruff", "timm>=1.0.18", "pycocotools"] + ONNX + TEXT,
    },
    entry_points={"console_scripts": ["pe-dense=pe_dense.cli:main"]},
)
