// CUDA graphs for tch (which binds none): capture what the caller runs between begin and end on a
// side stream, then replay it with one launch. Compiled where LibTorch ships its CUDA headers
// (BRAINPIPE_CUDA_GRAPHS); elsewhere every call reports that graphs are unavailable.
#include "shim.h"

#ifdef BRAINPIPE_CUDA_GRAPHS
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAStream.h>

namespace {
struct Graph {
    at::cuda::CUDAGraph graph;
    c10::cuda::CUDAStream side = c10::cuda::getStreamFromPool();
    c10::cuda::CUDAStream previous = c10::cuda::getCurrentCUDAStream();
};
}  // namespace

extern "C" void* brainpipe_graph_new(char* error, size_t error_len) {
    Graph* graph = nullptr;
    brainpipe::guarded(error, error_len, [&] { graph = new Graph(); });
    return graph;
}

extern "C" int brainpipe_graph_begin(void* handle, char* error, size_t error_len) {
    return brainpipe::guarded(error, error_len, [&] {
        auto* g = static_cast<Graph*>(handle);
        g->previous = c10::cuda::getCurrentCUDAStream();
        // Work already queued finishes first; the side stream is current during the capture.
        g->previous.synchronize();
        c10::cuda::setCurrentCUDAStream(g->side);
        g->graph.capture_begin();
    });
}

extern "C" int brainpipe_graph_end(void* handle, char* error, size_t error_len) {
    auto* g = static_cast<Graph*>(handle);
    int status = brainpipe::guarded(error, error_len, [&] { g->graph.capture_end(); });
    c10::cuda::setCurrentCUDAStream(g->previous);
    return status;
}

extern "C" int brainpipe_graph_replay(void* handle, char* error, size_t error_len) {
    return brainpipe::guarded(error, error_len,
                              [&] { static_cast<Graph*>(handle)->graph.replay(); });
}

extern "C" void brainpipe_graph_free(void* handle) { delete static_cast<Graph*>(handle); }

#else

namespace {
const char* const kUnavailable = "this LibTorch was built without CUDA headers: no CUDA graphs";
}

extern "C" void* brainpipe_graph_new(char* error, size_t error_len) {
    brainpipe::fail(kUnavailable, error, error_len);
    return nullptr;
}
extern "C" int brainpipe_graph_begin(void*, char* error, size_t error_len) {
    return brainpipe::fail(kUnavailable, error, error_len);
}
extern "C" int brainpipe_graph_end(void*, char* error, size_t error_len) {
    return brainpipe::fail(kUnavailable, error, error_len);
}
extern "C" int brainpipe_graph_replay(void*, char* error, size_t error_len) {
    return brainpipe::fail(kUnavailable, error, error_len);
}
extern "C" void brainpipe_graph_free(void*) {}

#endif
