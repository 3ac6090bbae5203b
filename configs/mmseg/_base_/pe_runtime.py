_base_ = ["mmseg::_base_/default_runtime.py"]
custom_imports = dict(imports=["pe_dense.mmseg"], allow_failed_imports=False)
