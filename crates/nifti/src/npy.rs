//! NumPy's `.npy` format (versions 1–3), as much as brainpipe reads: the header, and the data as
//! integers or floats in file order (the header says whether that is C or Fortran order).
//!
//! A file is the magic `\x93NUMPY`, a version, a header length, a Python dict literal with
//! `descr` (byte order and type, e.g. `<f4`, `|b1`), `fortran_order` and `shape`, then the raw
//! data. Used by `ingest.bold5000` (ROI masks) and `features.template_pad` (Brain2Word's
//! `sizes.npy` / `last_dim.npz`).

/// What a `.npy` header says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NpyHeader {
    /// `descr` as written, e.g. `<i8`.
    pub descr: String,
    /// Type letter: `b` (bool), `i`, `u`, `f`, `c`, `U`, …
    pub kind: char,
    /// Bytes per element.
    pub width: usize,
    /// Little-endian (or byte order not applicable, `|`).
    pub little_endian: bool,
    /// Data in Fortran (column-major) order.
    pub fortran_order: bool,
    /// Shape (empty for a scalar).
    pub shape: Vec<usize>,
    /// Offset of the first data byte.
    pub data_start: usize,
}

impl NpyHeader {
    /// Number of elements (`usize::MAX` when the shape's product overflows, which
    /// [`parse_npy_header`] refuses).
    pub fn count(&self) -> usize {
        self.shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d)).unwrap_or(usize::MAX)
    }

    /// The data bytes of `bytes` (the whole file), checked to hold every element.
    pub fn data<'a>(&self, bytes: &'a [u8]) -> Result<&'a [u8], String> {
        let need = self.count().checked_mul(self.width).ok_or_else(|| self.too_large())?;
        let data = bytes.get(self.data_start..).unwrap_or_default();
        if data.len() < need {
            return Err(format!(
                "truncated: {} data bytes for {} values of {} bytes",
                data.len(),
                self.count(),
                self.width
            ));
        }
        Ok(&data[..need])
    }

    fn too_large(&self) -> String {
        format!(
            "shape {:?} of dtype `{}` claims more bytes than can be addressed",
            self.shape, self.descr
        )
    }

    /// The elements as `i64`, file order; for integer (and bool) types only.
    pub fn integers(&self, bytes: &[u8]) -> Result<Vec<i64>, String> {
        let signed = match self.kind {
            'i' => true,
            'u' | 'b' => false,
            _ => return Err(format!("dtype `{}` is not an integer type", self.descr)),
        };
        let width = self.width;
        if !matches!(width, 1 | 2 | 4 | 8) {
            return Err(format!("dtype `{}` is not an integer type", self.descr));
        }
        Ok(self
            .data(bytes)?
            .chunks_exact(width)
            .map(|chunk| {
                let mut raw = [0u8; 8];
                if self.little_endian {
                    raw[..width].copy_from_slice(chunk);
                } else {
                    raw[..width].iter_mut().zip(chunk.iter().rev()).for_each(|(s, b)| *s = *b);
                }
                let unsigned = u64::from_le_bytes(raw);
                if signed && width < 8 {
                    let shift = 64 - 8 * width as u32;
                    ((unsigned << shift) as i64) >> shift
                } else {
                    unsigned as i64
                }
            })
            .collect())
    }

    /// The elements as `f64`, file order; for `f4`/`f8` and integer types.
    pub fn floats(&self, bytes: &[u8]) -> Result<Vec<f64>, String> {
        if self.kind != 'f' {
            return self.integers(bytes).map(|v| v.into_iter().map(|x| x as f64).collect());
        }
        let le = self.little_endian;
        let data = self.data(bytes)?;
        match self.width {
            4 => Ok(data
                .chunks_exact(4)
                .map(|c| {
                    let b = [c[0], c[1], c[2], c[3]];
                    f64::from(if le { f32::from_le_bytes(b) } else { f32::from_be_bytes(b) })
                })
                .collect()),
            8 => Ok(data
                .chunks_exact(8)
                .map(|c| {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(c);
                    if le { f64::from_le_bytes(b) } else { f64::from_be_bytes(b) }
                })
                .collect()),
            _ => Err(format!("dtype `{}` is not a float type this reader knows", self.descr)),
        }
    }
}

/// Parses the header of a `.npy` file held in `bytes`.
pub fn parse_npy_header(bytes: &[u8]) -> Result<NpyHeader, String> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err("not a .npy file (no \\x93NUMPY magic)".to_owned());
    }
    let (header_len, start) = match bytes[6] {
        1 => (usize::from(u16::from_le_bytes([bytes[8], bytes[9]])), 10),
        2 | 3 if bytes.len() >= 12 => {
            let len = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
            (usize::try_from(len).map_err(|_| "header too long")?, 12)
        }
        v => return Err(format!("unsupported .npy format version {v}")),
    };
    let header = bytes
        .get(start..start + header_len)
        .and_then(|h| std::str::from_utf8(h).ok())
        .ok_or("truncated or non-text header")?;
    let descr = dict_value(header, "descr").ok_or("header has no `descr`")?;
    let quote = descr
        .chars()
        .next()
        .filter(|c| matches!(c, '\'' | '"'))
        .ok_or("`descr` is not a quoted string")?;
    let descr = descr[1..].split(quote).next().unwrap_or("").to_owned();
    let mut chars = descr.chars();
    let little_endian = match chars.next() {
        Some('<' | '|' | '=') => true,
        Some('>') => false,
        _ => return Err(format!("dtype `{descr}` has no byte order")),
    };
    let kind = chars.next().ok_or_else(|| format!("dtype `{descr}` has no type"))?;
    let width: usize =
        chars.as_str().parse().map_err(|_| format!("dtype `{descr}` has no element size"))?;
    let fortran = dict_value(header, "fortran_order").ok_or("header has no `fortran_order`")?;
    let shape_text = dict_value(header, "shape").ok_or("header has no `shape`")?;
    let shape = shape_text
        .trim_start_matches('(')
        .split(')')
        .next()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>().map_err(|_| format!("bad shape {shape_text}")))
        .collect::<Result<_, _>>()?;
    let header = NpyHeader {
        descr,
        kind,
        width,
        little_endian,
        fortran_order: fortran.starts_with("True"),
        shape,
        data_start: start + header_len,
    };
    // Every size computed from the header (elements, data bytes) must fit a usize.
    let bytes = header.shape.iter().try_fold(width, |n, &d| n.checked_mul(d));
    if bytes.is_none() {
        return Err(header.too_large());
    }
    Ok(header)
}

/// The text after `'key':` in a Python dict literal, up to the end of the header.
fn dict_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let at = header.find(&format!("'{key}'")).or_else(|| header.find(&format!("\"{key}\"")))?;
    let rest = &header[at + key.len() + 2..];
    Some(rest.trim_start().strip_prefix(':')?.trim_start())
}

/// A version-1 `.npy` file as NumPy writes it (header padded to 64 bytes with a newline), for
/// tests here and in other crates.
pub fn npy_bytes(descr: &str, fortran: bool, shape: &[usize], data: &[u8]) -> Vec<u8> {
    let shape = shape.iter().map(|s| format!("{s}, ")).collect::<String>();
    let mut header = format!(
        "{{'descr': '{descr}', 'fortran_order': {}, 'shape': ({}), }}",
        if fortran { "True" } else { "False" },
        shape.trim_end_matches(' ')
    );
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(data);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_and_floats_of_either_byte_order() {
        let le: Vec<u8> = [-2i16, 300].iter().flat_map(|v| v.to_le_bytes()).collect();
        let be: Vec<u8> = [-2i16, 300].iter().flat_map(|v| v.to_be_bytes()).collect();
        for (descr, data) in [("<i2", le), (">i2", be)] {
            let bytes = npy_bytes(descr, false, &[2], &data);
            let h = parse_npy_header(&bytes).expect("header");
            assert_eq!((h.kind, h.width, h.shape.clone()), ('i', 2, vec![2]));
            assert_eq!(h.integers(&bytes).expect("ints"), vec![-2, 300]);
            assert_eq!(h.floats(&bytes).expect("floats"), vec![-2.0, 300.0]);
        }
        let bytes = npy_bytes("<f8", true, &[1, 2], &[0.5f64, -1.0].map(f64::to_le_bytes).concat());
        let h = parse_npy_header(&bytes).expect("header");
        assert!(h.fortran_order);
        assert_eq!(h.floats(&bytes).expect("floats"), vec![0.5, -1.0]);
        assert!(h.integers(&bytes).expect_err("a float").contains("not an integer type"));
    }

    #[test]
    fn malformed_headers_say_what_is_wrong() {
        let cases: [(Vec<u8>, &str); 7] = [
            (b"PK\x03\x04 not numpy".to_vec(), "magic"),
            (npy_bytes("i4", false, &[1], &[0; 4]), "no byte order"),
            (npy_bytes("<i4", false, &[3], &[0; 5]), "truncated: 5 data bytes"),
            (npy_bytes("<U7", false, &[1], &[0; 28]), "not an integer type"),
            // Sizes that overflowed usize (found by fuzz/, target npy), and a `descr` whose
            // first character, taken as its quote, was multi-byte and sliced mid-character.
            (
                npy_bytes("<f4", false, &[1 << 32, 1 << 32, 1 << 32], &[]),
                "claims more bytes than can be addressed",
            ),
            (npy_bytes("<i18446744073709551615", false, &[2], &[]), "claims more bytes"),
            (
                b"\x93NUMPY\x01\x00\x37\x00{'descr': \xc3\xa9<f4, 'fortran_order': False, 'shape': (1,)}"
                    .to_vec(),
                "`descr` is not a quoted string",
            ),
        ];
        for (bytes, expect) in cases {
            let err = parse_npy_header(&bytes).and_then(|h| h.integers(&bytes)).expect_err(expect);
            assert!(err.contains(expect), "{err}");
        }
    }
}
