//! Every malformed input gives one error naming the file and the fault.

use std::path::{Path, PathBuf};

use brainpipe_nifti::{NiftiWriter, VolumeReader, WriteOptions, XFORM_SCANNER, read_f32};

const AFFINE: [[f64; 4]; 4] =
    [[2.0, 0.0, 0.0, 0.0], [0.0, 2.0, 0.0, 0.0], [0.0, 0.0, 2.0, 0.0], [0.0, 0.0, 0.0, 1.0]];

fn valid(dir: &Path, name: &str, gzip: bool) -> PathBuf {
    let path = dir.join(name);
    let options = WriteOptions {
        affine: AFFINE,
        xform_code: XFORM_SCANNER,
        tr_s: None,
        gzip_level: gzip.then_some(1),
    };
    let mut writer = NiftiWriter::<i16>::create(&path, &[4, 3, 2, 3], &options).expect("create");
    for t in 0..3 {
        writer.write_volume(&[t as i16; 24]).expect("volume");
    }
    writer.finish().expect("finish");
    path
}

/// Rewrites bytes of an uncompressed file.
fn patch(path: &Path, at: usize, bytes: &[u8]) {
    let mut data = std::fs::read(path).expect("read");
    data[at..at + bytes.len()].copy_from_slice(bytes);
    std::fs::write(path, data).expect("write");
}

fn fails_with(path: &Path, needle: &str) {
    let err = read_f32(path).expect_err(needle).to_string();
    assert!(err.starts_with(&path.display().to_string()), "names the file: {err}");
    assert!(err.contains(needle), "expected {needle:?} in {err:?}");
    assert_eq!(err.lines().count(), 1, "one line: {err:?}");
}

#[test]
fn each_fault_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();

    let p = valid(d, "truncated.nii.gz", true);
    let bytes = std::fs::read(&p).expect("read");
    std::fs::write(&p, &bytes[..bytes.len() / 2]).expect("truncate");
    let err = read_f32(&p).expect_err("truncated gzip").to_string();
    assert!(err.contains("truncated") || err.contains("corrupt"), "{err}");

    let p = valid(d, "garbage.nii.gz", true);
    let mut bytes = std::fs::read(&p).expect("read");
    let n = bytes.len();
    bytes[n / 2..n - 8].iter_mut().for_each(|b| *b ^= 0x5a);
    std::fs::write(&p, &bytes).expect("corrupt");
    fails_with(&p, "gzip");

    let p = valid(d, "short.nii", false);
    let bytes = std::fs::read(&p).expect("read");
    std::fs::write(&p, &bytes[..bytes.len() - 10]).expect("cut");
    fails_with(&p, "need 144 data bytes after offset 352, the file has 134");

    let p = valid(d, "offset.nii", false);
    patch(&p, 108, &100_000f32.to_le_bytes());
    fails_with(&p, "vox_offset 100000 is past the end of the file");

    let p = valid(d, "dim0.nii", false);
    patch(&p, 40, &8i16.to_le_bytes());
    fails_with(&p, "dim[0] is 8, must be 1..7");

    let p = valid(d, "negative.nii", false);
    patch(&p, 44, &(-3i16).to_le_bytes());
    fails_with(&p, "dim[2] is negative (-3)");

    let p = valid(d, "datatype.nii", false);
    patch(&p, 70, &999i16.to_le_bytes());
    fails_with(&p, "unknown datatype code 999");

    let p = valid(d, "complex.nii", false);
    patch(&p, 70, &32i16.to_le_bytes());
    fails_with(&p, "complex data");

    let p = valid(d, "rgb.nii", false);
    patch(&p, 70, &128i16.to_le_bytes());
    fails_with(&p, "RGB data");

    let p = valid(d, "nanslope.nii", false);
    patch(&p, 112, &f32::NAN.to_le_bytes());
    fails_with(&p, "scl_slope is NaN with integer data");

    let p = valid(d, "naninter.nii", false);
    patch(&p, 116, &f32::INFINITY.to_le_bytes());
    fails_with(&p, "invalid scl_inter");

    let p = d.join("not-nifti.nii");
    std::fs::write(&p, vec![7u8; 400]).expect("write");
    fails_with(&p, "not a NIfTI file");

    let p = valid(d, "magic.nii", false);
    patch(&p, 344, b"xx1\0");
    fails_with(&p, "bad NIfTI-1 magic");

    let p = d.join("missing.nii");
    fails_with(&p, "No such file");
}

#[test]
fn streaming_holds_one_volume() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = valid(dir.path(), "stream.nii.gz", true);
    let mut reader = VolumeReader::open(&p).expect("open");
    let mut volume = Vec::new();
    let mut firsts = Vec::new();
    while reader.read_volume(&mut volume).expect("volume") {
        assert_eq!(volume.len(), 24);
        firsts.push(volume[0]);
    }
    assert_eq!(firsts, vec![0.0, 1.0, 2.0]);
}

#[test]
fn writes_are_deterministic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = std::fs::read(valid(dir.path(), "a.nii.gz", true)).expect("a");
    let b = std::fs::read(valid(dir.path(), "b.nii.gz", true)).expect("b");
    assert_eq!(a, b);
}

#[test]
fn a_gzip_whose_header_claims_a_huge_grid_is_refused_without_allocating_it() {
    // Issue 15.3: a 1 KB .nii.gz claiming 1024⁴ voxels made readers allocate by the claim
    // (12 GB, then abort). Memory must follow the data, and the error name the file.
    use std::io::Write;
    let dir = tempfile::tempdir().expect("tempdir");
    let plain = valid(dir.path(), "claims.nii", false);
    let dims: Vec<u8> =
        [4i16, 1024, 1024, 1024, 1024, 1, 1, 1].iter().flat_map(|d| d.to_le_bytes()).collect();
    patch(&plain, 40, &dims);
    let gz = dir.path().join("claims.nii.gz");
    let mut encoder = flate2::write::GzEncoder::new(
        std::fs::File::create(&gz).expect("create"),
        flate2::Compression::fast(),
    );
    encoder.write_all(&std::fs::read(&plain).expect("read")).expect("gzip");
    encoder.finish().expect("finish");
    assert!(std::fs::metadata(&gz).expect("size").len() < 2048);
    fails_with(&gz, "data end in volume 0");
    let mut reader = VolumeReader::open(&gz).expect("the header itself is valid");
    let err = reader.check_data().expect_err("no such data").to_string();
    assert!(err.contains("truncated file, or dims larger than the data"), "{err}");
}

#[test]
fn dims_beyond_addressable_memory_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = valid(dir.path(), "vast.nii", false);
    let dims: Vec<u8> = [7i16, 32767, 32767, 32767, 32767, 32767, 32767, 32767]
        .iter()
        .flat_map(|d| d.to_le_bytes())
        .collect();
    patch(&p, 40, &dims);
    fails_with(&p, "claim more data than can be addressed");
}

#[test]
fn a_zero_dimension_is_refused_not_streamed_as_empty_volumes() {
    // Seen while writing fuzz/, confirmed by its nifti_stream target (a libFuzzer timeout):
    // dims [0, 2, 2, 32767, 32767, 32767, 1] made readers return 32767³ empty volumes one by
    // one, a hang on a 400-byte file.
    let dir = tempfile::tempdir().expect("tempdir");
    let p = valid(dir.path(), "empty.nii", false);
    let dims: Vec<u8> =
        [7i16, 0, 2, 2, 32767, 32767, 32767, 1].iter().flat_map(|d| d.to_le_bytes()).collect();
    patch(&p, 40, &dims);
    let err = VolumeReader::open(&p).err().expect("refused at open").to_string();
    assert!(err.contains("dim[1] is 0"), "{err}");
    fails_with(&p, "dim[1] is 0: every used dimension needs at least 1 voxel");
}
