//! NumPy `.npy` headers and data (`brainpipe_nifti::npy`): every input parses or gives an error,
//! and what parses reads as integers or floats or says why not, never panicking.

#![no_main]

use brainpipe_nifti::npy::parse_npy_header;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(header) = parse_npy_header(data) else { return };
    if let Ok(bytes) = header.data(data) {
        assert_eq!(bytes.len(), header.count() * header.width);
    }
    if let Ok(values) = header.integers(data) {
        assert_eq!(values.len(), header.count());
    }
    if let Ok(values) = header.floats(data) {
        assert_eq!(values.len(), header.count());
    }
});
