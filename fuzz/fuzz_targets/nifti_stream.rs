//! The streaming reader on real files: `VolumeReader` (single `.nii`, `.nii.gz` by its magic, and
//! `.hdr`/`.img` pairs, either one gzipped), `check_data`, every volume, and `read_header`.
//!
//! Input layout: byte 0 chooses the mode. Bit 0 clear: bytes 1.. are one file `v.nii`. Bit 0 set:
//! a pair, bytes 1..3 are the header file's length `n` (u16 little-endian), bytes 3..3+n are
//! `p.hdr` and the rest `p.img`; bit 1 opens the pair by its `.img` name instead of its `.hdr`.

#![no_main]

use std::path::Path;

use brainpipe_nifti::{VolumeReader, read_header};
use libfuzzer_sys::fuzz_target;

mod scratch;
use scratch::scratch as dir;

fn write(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).expect("write fuzz input");
}

fn check_one_line(path: &Path, message: &str) {
    // A pair's error may name either member.
    let stem = path.with_extension("");
    assert!(message.starts_with(&stem.display().to_string()), "names the file: {message:?}");
    assert_eq!(message.lines().count(), 1, "one line: {message:?}");
}

fn read_all(path: &Path) {
    let mut reader = match VolumeReader::open(path) {
        Ok(reader) => reader,
        Err(e) => return check_one_line(path, &e.to_string()),
    };
    let header = reader.header().clone();
    let alone = read_header(path).expect("a header VolumeReader opened reads alone");
    // Debug, not ==: a NaN field is the same field.
    assert_eq!(format!("{alone:?}"), format!("{header:?}"));
    if let Err(e) = reader.check_data() {
        return check_one_line(path, &e.to_string());
    }
    let mut volume = Vec::new();
    let mut seen = 0usize;
    loop {
        match reader.read_volume(&mut volume) {
            Ok(true) => {
                assert_eq!(volume.len(), header.volume_len());
                seen += 1;
            }
            Ok(false) => break,
            Err(e) => return check_one_line(path, &e.to_string()),
        }
    }
    assert_eq!(seen, header.volumes());
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let dir = dir();
    for name in ["v.nii", "p.hdr", "p.img"] {
        let _ = std::fs::remove_file(dir.join(name));
    }
    if mode & 1 == 0 {
        let path = dir.join("v.nii");
        write(&path, rest);
        read_all(&path);
    } else {
        if rest.len() < 2 {
            return;
        }
        let n = usize::from(u16::from_le_bytes([rest[0], rest[1]])).min(rest.len() - 2);
        let (hdr, img) = rest[2..].split_at(n);
        write(&dir.join("p.hdr"), hdr);
        write(&dir.join("p.img"), img);
        read_all(&dir.join(if mode & 2 == 0 { "p.hdr" } else { "p.img" }));
    }
});
