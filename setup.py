"""Build of the yolact_fast extensions: ``yolact_fast._C`` (the ops) and
``yolact_fast._emulation`` (the CUDA kernels under a host emulation, for tests).

CPU kernels are always built. The CUDA kernels are added when a GPU and nvcc are
found, or when FORCE_CUDA=1 (then nvcc must exist). Environment:
  FORCE_CUDA=1            build the CUDA kernels without a visible GPU
  TORCH_CUDA_ARCH_LIST    target architectures (default when no GPU is visible:
                          scripts/cuda_toolkit.py, also read by the shell scripts)
  MAX_JOBS                parallel compile jobs (ninja)
  DEBUG=1                 -O0 -g, no NDEBUG
  SANITIZE=1              CPU code with AddressSanitizer + UndefinedBehaviorSanitizer
  YOLACT_FAST_SKIP_EXT=1  package only, no extension: for an editable install over an
                          extension built in place (`python setup.py build_ext --inplace`,
                          incremental with ninja in build/), as scripts/install.sh does
"""

import glob
import importlib.util
import os
import sysconfig

import torch
from setuptools import setup
from torch.utils import cpp_extension


def load_cuda_toolkit_helper():
    """scripts/cuda_toolkit.py: the default architectures and the nvcc probe (one home for
    setup.py and the shell scripts)."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "scripts", "cuda_toolkit.py")
    spec = importlib.util.spec_from_file_location("yolact_fast_cuda_toolkit", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


cuda_toolkit = load_cuda_toolkit_helper()


def env_flag(name):
    return os.environ.get(name, "0").lower() in ("1", "true", "yes", "on")


def resolve_cuda_home():
    """torch guesses CUDA_HOME from the nvcc on PATH, which is wrong for a wrapper script
    (no lib64/libcudart next to it): ask nvcc where its toolkit lives instead."""
    if os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH"):
        return
    guess = cpp_extension.CUDA_HOME
    if guess and glob.glob(os.path.join(guess, "lib*", "libcudart.so*")):
        return
    toolkit = cuda_toolkit.toolkit_of_nvcc()
    if toolkit:
        os.environ["CUDA_HOME"] = toolkit
        cpp_extension.CUDA_HOME = toolkit


def cuda_wheel_includes():
    """Headers torch needs (cusparse.h, cublas_v2.h, ...) that come with its nvidia wheels."""
    site = sysconfig.get_paths()["purelib"]
    return sorted(glob.glob(os.path.join(site, "nvidia", "cu*", "include")))


def want_cuda():
    if env_flag("FORCE_CUDA"):
        if cpp_extension.CUDA_HOME is None:
            raise RuntimeError("FORCE_CUDA=1 but no CUDA toolkit was found: put nvcc on PATH or set CUDA_HOME")
        return True
    return torch.cuda.is_available() and cpp_extension.CUDA_HOME is not None


def compile_args(with_cuda):
    debug, sanitize = env_flag("DEBUG"), env_flag("SANITIZE")
    opt = ["-O0", "-g"] if debug or sanitize else ["-O3"]
    cxx = opt + ["-fopenmp", "-ffp-contract=off"]
    link = ["-fopenmp"]
    if sanitize:
        sanitizers = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer"]
        cxx += sanitizers + ["-fno-sanitize-recover=undefined"]
        link += sanitizers
    args = {"cxx": cxx}
    if with_cuda:
        args["nvcc"] = opt + list(cuda_toolkit.NVCC_FLAGS)
        cxx.append("-DYF_WITH_CUDA")
        args["nvcc"].append("-DYF_WITH_CUDA")
    if not debug and not sanitize:
        for flags in args.values():
            flags.append("-DNDEBUG")
    return args, link


def get_extensions():
    if env_flag("YOLACT_FAST_SKIP_EXT"):
        return []
    resolve_cuda_home()
    with_cuda = want_cuda()
    if with_cuda and not os.environ.get("TORCH_CUDA_ARCH_LIST") and not torch.cuda.is_available():
        os.environ["TORCH_CUDA_ARCH_LIST"] = cuda_toolkit.DEFAULT_CUDA_ARCHS
    sources = ["csrc/yolact_fast.cpp", "csrc/checks.cpp", "csrc/python_module.cpp"]
    sources += sorted(glob.glob("csrc/cpu/*.cpp"))
    extension = cpp_extension.CppExtension
    if with_cuda:
        sources += sorted(glob.glob("csrc/cuda/*.cu"))
        extension = cpp_extension.CUDAExtension
    cflags, ldflags = compile_args(with_cuda)
    emulation_cflags, _ = compile_args(False)
    # Headers too, so that an in-place rebuild notices a changed kernel header.
    headers = sorted(glob.glob("csrc/**/*.h", recursive=True) + glob.glob("csrc/**/*.cuh", recursive=True))
    return [
        extension(
            "yolact_fast._C",
            sources,
            include_dirs=[os.path.abspath("csrc")] + (cuda_wheel_includes() if with_cuda else []),
            depends=headers,
            extra_compile_args=cflags,
            extra_link_args=ldflags,
        ),
        # The CUDA launchers and kernels compiled for the host emulation, and its self-test
        # kernels: for yolact_fast.testing and the tests, kept out of the shipped _C.
        cpp_extension.CppExtension(
            "yolact_fast._emulation",
            ["csrc/checks.cpp"] + sorted(glob.glob("csrc/emulation/*.cpp")),
            include_dirs=[os.path.abspath("csrc")],
            depends=headers,
            extra_compile_args=emulation_cflags,
            extra_link_args=ldflags,
        ),
    ]


class BuildExtension(cpp_extension.BuildExtension.with_options(use_ninja=True)):
    """Also records the torch the extension is compiled against, in _build_info.py next to
    it (yolact_fast/_build_check.py compares it with the torch that imports the package)."""

    def run(self):
        super().run()
        if not self.extensions:
            return
        with_cuda = any(source.endswith(".cu") for ext in self.extensions for source in ext.sources)
        path = os.path.join(os.path.dirname(self.get_ext_fullpath("yolact_fast._C")), "_build_info.py")
        with open(path, "w") as file:
            file.write(
                "# Written by setup.py when the extension was compiled: the torch it was compiled against.\n"
                f"TORCH_VERSION = {torch.__version__!r}\n"
                f"CUDA_VERSION = {torch.version.cuda if with_cuda else None!r}  # None: no CUDA kernels\n"
            )


# The package's metadata is in pyproject.toml; this file builds the extension only.
setup(
    ext_modules=get_extensions(),
    cmdclass={"build_ext": BuildExtension},
)
