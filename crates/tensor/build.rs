//! Records the LibTorch version that torch-sys linked against, so `brainpipe doctor` can report it,
//! and links this crate's test binaries against libtorch the way the CLI is linked (GPU.md).
use std::path::PathBuf;

fn main() {
    brainpipe_build_torch::link_libtorch(brainpipe_build_torch::Targets::All);
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let version = std::env::var_os("DEP_TCH_LIBTORCH_LIB")
        .map(PathBuf::from)
        .and_then(|lib| libtorch_version(&lib))
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=BRAINPIPE_LIBTORCH_VERSION={version}");
    compile_fused_adam();
}

/// `csrc/fused_adam.cpp` and `csrc/cuda_graph.cpp` against the headers of the LibTorch torch-sys linked (`lib/../include`),
/// with torch-sys' flags (C++17, the C++11 ABI of PyPI torch ≥ 2.7).
fn compile_fused_adam() {
    println!("cargo:rerun-if-changed=csrc/fused_adam.cpp");
    let lib = std::env::var_os("DEP_TCH_LIBTORCH_LIB")
        .map(PathBuf::from)
        .expect("torch-sys did not report its LibTorch folder (DEP_TCH_LIBTORCH_LIB)");
    let include = lib.parent().map(|p| p.join("include")).unwrap_or_default();
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    let abi = std::env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".to_owned());
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .file("csrc/fused_adam.cpp")
        .file("csrc/cuda_graph.cpp")
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
        .warnings(false);
    println!("cargo:rerun-if-changed=csrc/cuda_graph.cpp");
    println!("cargo:rerun-if-changed=csrc/shim.h");
    // CUDA graphs need LibTorch's CUDA headers and the CUDA runtime's (the PyPI wheel's
    // nvidia/cu*/include beside torch/); without them the shim compiles to "unavailable".
    let cuda_include = lib
        .parent()
        .and_then(|torch| torch.parent())
        .and_then(|site| std::fs::read_dir(site.join("nvidia")).ok())
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path().join("include")))
        .find(|p| p.join("cuda_runtime_api.h").exists());
    // The wheel's runtime headers lack `crt/host_config.h`; Triton (a torch dependency) ships it.
    let crt_include = lib
        .parent()
        .and_then(|torch| torch.parent())
        .map(|site| site.join("triton/backends/nvidia/include"))
        .filter(|p| p.join("crt/host_config.h").exists());
    if let (Some(cuda), Some(crt)) = (cuda_include, crt_include)
        && include.join("ATen/cuda/CUDAGraph.h").exists()
    {
        build.include(cuda).include(crt).define("BRAINPIPE_CUDA_GRAPHS", None);
        // The capture calls into these directly (tch itself needs neither).
        println!("cargo:rustc-link-lib=dylib=torch_cuda");
        println!("cargo:rustc-link-lib=dylib=c10_cuda");
    }
    build.compile("brainpipe_torch_shims");
}

/// PyPI torch ships `torch/version.py` (`__version__ = '2.11.0+cu130'`); a plain LibTorch zip ships
/// `build-version`. `lib` is the `lib/` folder inside either.
fn libtorch_version(lib: &std::path::Path) -> Option<String> {
    let root = lib.parent()?;
    if let Ok(text) = std::fs::read_to_string(root.join("version.py")) {
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("__version__") {
                let value = rest.trim_start_matches([' ', '=']).trim().trim_matches(['\'', '"']);
                return Some(value.to_owned());
            }
        }
    }
    std::fs::read_to_string(root.join("build-version")).ok().map(|s| s.trim().to_owned())
}
