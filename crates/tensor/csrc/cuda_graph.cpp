// CUDA graphs for tch (which binds none): capture what the caller runs between begin and end on a
// side stream, then replay it with one launch. Compiled where LibTorch ships its CUDA headers
// (BRAINPIPE_CUDA_GRAPHS); elsewhere every call reports that graphs are unavailable.
#include <cstring>
#include <exception>
#include <string>

#ifdef BRAINPIPE_CUDA_GRAPHS
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace {
int fail(const std::string& what, char* error, size_t error_len) {
    if (error_len > 0) {
        std::strncpy(error, what.c_str(), error_len - 1);
        error[error_len - 1] = '\0';
    }
    return 1;
}

#ifdef BRAINPIPE_CUDA_GRAPHS
struct Graph {
    at::cuda::CUDAGraph graph;
    c10::cuda::CUDAStream side = c10::cuda::getStreamFromPool();
    c10::cuda::CUDAStream previous = c10::cuda::getCurrentCUDAStream();
};
#endif
}  // namespace

extern "C" void* brainpipe_graph_new(char* error, size_t error_len) {
#ifdef BRAINPIPE_CUDA_GRAPHS
    try {
        return new Graph();
    } catch (const std::exception& e) {
        fail(e.what(), error, error_len);
        return nullptr;
    }
#else
    fail("this LibTorch was built without CUDA headers: no CUDA graphs", error, error_len);
    return nullptr;
#endif
}

extern "C" int brainpipe_graph_begin(void* handle, char* error, size_t error_len) {
#ifdef BRAINPIPE_CUDA_GRAPHS
    try {
        auto* g = static_cast<Graph*>(handle);
        g->previous = c10::cuda::getCurrentCUDAStream();
        // The side stream waits for work already queued, then becomes current for the capture.
        g->side.synchronize();
        g->previous.synchronize();
        c10::cuda::setCurrentCUDAStream(g->side);
        g->graph.capture_begin();
        return 0;
    } catch (const std::exception& e) {
        return fail(e.what(), error, error_len);
    }
#else
    (void)handle;
    return fail("no CUDA graphs", error, error_len);
#endif
}

extern "C" int brainpipe_graph_end(void* handle, char* error, size_t error_len) {
#ifdef BRAINPIPE_CUDA_GRAPHS
    auto* g = static_cast<Graph*>(handle);
    try {
        g->graph.capture_end();
        c10::cuda::setCurrentCUDAStream(g->previous);
        return 0;
    } catch (const std::exception& e) {
        c10::cuda::setCurrentCUDAStream(g->previous);
        return fail(e.what(), error, error_len);
    }
#else
    (void)handle;
    return fail("no CUDA graphs", error, error_len);
#endif
}

extern "C" int brainpipe_graph_replay(void* handle, char* error, size_t error_len) {
#ifdef BRAINPIPE_CUDA_GRAPHS
    try {
        static_cast<Graph*>(handle)->graph.replay();
        return 0;
    } catch (const std::exception& e) {
        return fail(e.what(), error, error_len);
    }
#else
    (void)handle;
    return fail("no CUDA graphs", error, error_len);
#endif
}

extern "C" void brainpipe_graph_free(void* handle) {
#ifdef BRAINPIPE_CUDA_GRAPHS
    delete static_cast<Graph*>(handle);
#else
    (void)handle;
#endif
}
