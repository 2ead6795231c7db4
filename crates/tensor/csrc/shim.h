// What the C++ shims share: a C++ exception becomes status 1 and a NUL-terminated message.
#pragma once

#include <cstring>
#include <exception>
#include <string>

namespace brainpipe {

inline int fail(const std::string& what, char* error, size_t error_len) {
    if (error_len > 0) {
        std::strncpy(error, what.c_str(), error_len - 1);
        error[error_len - 1] = '\0';
    }
    return 1;
}

// Runs `f`; 0 when it returns, 1 and the exception's message when it throws.
template <typename F>
int guarded(char* error, size_t error_len, F&& f) {
    try {
        f();
        return 0;
    } catch (const std::exception& e) {
        return fail(e.what(), error, error_len);
    }
}

}  // namespace brainpipe
