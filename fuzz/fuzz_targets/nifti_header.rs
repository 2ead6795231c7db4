//! The NIfTI-1/NIfTI-2 header parser and the in-memory reader (`read_f32_bytes`, which also
//! inflates `.nii.gz` bytes), then everything derived from a header: affines, their inverse,
//! the nearest voxel. Every input either reads, with as many values as the dims say, or gives one
//! line naming the file.

#![no_main]

use std::path::Path;

use brainpipe_nifti::{invert_affine, nearest_voxel, read_f32_bytes, voxel_to_world};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let name = Path::new("fuzz.nii");
    match read_f32_bytes(data, name) {
        Ok((header, values)) => {
            assert_eq!(values.len(), header.volume_len() * header.volumes());
            let _ = (header.qform_affine(), header.base_affine(), header.scaling());
            let affine = header.affine();
            if let Some(inverse) = invert_affine(&affine) {
                let corner = header.shape3().map(|n| n.saturating_sub(1) as f64);
                for ijk in [[0.0; 3], corner] {
                    let _ = nearest_voxel(&inverse, header.shape3(), voxel_to_world(&affine, ijk));
                }
            }
        }
        Err(e) => {
            let message = e.to_string();
            assert!(message.starts_with("fuzz.nii: "), "names the file: {message:?}");
            assert_eq!(message.lines().count(), 1, "one line: {message:?}");
        }
    }
});
