//! MATLAB v5 MAT-files (`brainpipe_artifacts::mat::parse_mat`: Pereira's data, BOLD5000's ROI
//! masks): every input parses or gives a one-line error, never panicking, hanging or allocating
//! past the limit; what parses is self-consistent (a numeric array holds as many values as its
//! dims say).

#![no_main]

use brainpipe_artifacts::mat::{MatValue, parse_mat};
use libfuzzer_sys::fuzz_target;

fn check(value: &MatValue) {
    let count = value.dims().iter().try_fold(1usize, |n, &d| n.checked_mul(d));
    match value {
        MatValue::Numeric { data, .. } => assert_eq!(Some(data.len()), count),
        MatValue::Cell { items, .. } => {
            assert_eq!(Some(items.len()), count);
            items.iter().for_each(check);
        }
        MatValue::Struct { items, .. } => {
            for item in items {
                item.values().for_each(check);
            }
        }
        MatValue::Char { .. } => {
            let _ = value.text();
        }
    }
}

fuzz_target!(|data: &[u8]| {
    match parse_mat(data) {
        Ok(variables) => variables.values().for_each(check),
        Err(message) => assert!(!message.contains('\n'), "one line: {message}"),
    }
});
