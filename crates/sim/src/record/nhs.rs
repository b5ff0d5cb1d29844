//! NHS numbers: the Modulus 11 check digit and the synthetic test ranges.

/// The Modulus 11 check digit of the first nine digits, or None when the remainder makes the number invalid
/// (check value 10). Weights 10 down to 2; check = 11 - (sum mod 11), and 11 becomes 0.
pub fn check_digit(first_nine: &[u8; 9]) -> Option<u8> {
    let sum: u32 = first_nine
        .iter()
        .zip((2..=10u32).rev())
        .map(|(&d, w)| u32::from(d) * w)
        .sum();
    match 11 - (sum % 11) {
        11 => Some(0),
        10 => None,
        c => u8::try_from(c).ok(),
    }
}

/// Whether `s` is a ten-digit NHS number with a correct Modulus 11 check digit.
pub fn is_valid(s: &str) -> bool {
    let bytes = s.as_bytes();
    if bytes.len() != 10 || !bytes.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let mut nine = [0u8; 9];
    for (d, b) in nine.iter_mut().zip(bytes) {
        *d = b - b'0';
    }
    check_digit(&nine) == Some(bytes[9] - b'0')
}

/// Whether `s` is in one of the synthetic test ranges (starting 900 or 999) that never reach real patients.
pub fn is_test_range(s: &str) -> bool {
    s.starts_with("900") || s.starts_with("999")
}

/// The valid NHS number with these first nine digits (as a number below 10^9), if its check digit exists.
pub fn from_base(base: u32) -> Option<String> {
    if base >= 1_000_000_000 {
        return None;
    }
    let text = format!("{base:09}");
    let mut nine = [0u8; 9];
    for (d, b) in nine.iter_mut().zip(text.bytes()) {
        *d = b - b'0';
    }
    check_digit(&nine).map(|c| format!("{text}{c}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_numbers_pass_and_neighbours_fail() {
        assert!(is_valid("9000000009"));
        assert!(is_valid("9000000017"));
        assert!(!is_valid("9000000008"));
        assert!(!is_valid("900000000"));
        assert!(!is_valid("90000000x9"));
        assert_eq!(from_base(900_000_000).as_deref(), Some("9000000009"));
        assert_eq!(from_base(900_000_001).as_deref(), Some("9000000017"));
    }

    #[test]
    fn check_value_ten_is_invalid() {
        // 900000002x: sum = 9*10 + 2*2 = 94, 94 mod 11 = 6, check 5. Find a base whose check is 10.
        let invalid = (900_000_000..900_000_100).find(|&b| from_base(b).is_none());
        assert!(invalid.is_some(), "some bases have no valid check digit");
    }
}
