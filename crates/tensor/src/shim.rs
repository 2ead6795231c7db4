//! The Rust side of the C++ shims' error protocol: a status and a NUL-terminated message whose
//! first line is kept (LibTorch appends a C++ stack trace after it).

use std::ffi::c_char;

use crate::TensorError;

/// The error in `buffer` (written by a shim), prefixed with `what`.
pub(crate) fn message(what: &str, buffer: &[c_char]) -> TensorError {
    let bytes: Vec<u8> = buffer.iter().take_while(|&&b| b != 0).map(|&b| b as u8).collect();
    let text = String::from_utf8_lossy(&bytes);
    TensorError::Shape(format!("{what}: {}", text.lines().next().unwrap_or("unknown error").trim()))
}

/// Calls a shim with an error buffer; a non-zero status becomes [`message`].
pub(crate) fn checked(
    what: &str,
    call: impl FnOnce(*mut c_char, usize) -> i32,
) -> Result<(), TensorError> {
    let mut buffer = vec![0 as c_char; 1024];
    if call(buffer.as_mut_ptr(), buffer.len()) == 0 { Ok(()) } else { Err(message(what, &buffer)) }
}
