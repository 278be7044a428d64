//! Number literals read exactly: the one inference policy for numbers in JSON pages, JSON
//! lines and CSV fields.
//!
//! Raw must reproduce what the source said, so no inferred column is ever `float64` (most
//! decimal fractions, `0.1` among them, have no exact binary form, and integers past 2^53
//! lose digits). The policy, shared by every connector that infers types from text:
//!
//! - Only the JSON number grammar is a number: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
//!   Anything else (`+5`, `007`, `.5`, `5.`, ` 5`, `1,5`, `NaN`, `Infinity`) is text.
//! - An integer literal that fits `i64` is [`Number::Int`] (`int64`).
//! - Every other number (a fraction, an exponent, an integer past `i64`) is an exact
//!   [`Number::Decimal`]: its digits and its scale. Trailing zeros count (`12.50` has scale 2),
//!   exponents are applied (`1.5e2` is `150`, scale 0; `1.5e-3` is `0.0015`, scale 4).
//!   The column is `decimal(38, s)` with `s` the largest scale seen.
//! - A value that `decimal(38, s)` cannot hold (more than 38 digits, or more integer digits
//!   than `38 - s`) is [`Number::Inexact`]: the column becomes text holding every value's
//!   original text.
//! - `-0` is `0` (no integer or decimal type keeps the sign of zero).

/// The widest precision inferred decimals use (the widest every engine reads).
pub const MAX_PRECISION: u8 = 38;

/// The integer digits an `int64` column may hold, when it widens to a decimal.
pub const INT64_DIGITS: u8 = 19;

/// A number literal, classified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Number {
    /// An integer literal within `i64`.
    Int(i64),
    /// An exact decimal: `unscaled / 10^scale`.
    Decimal {
        /// The digits, as an integer.
        unscaled: i128,
        /// Digits after the point.
        scale: u8,
        /// Digits before the point (0 for `0.5`).
        int_digits: u8,
    },
    /// A number no `decimal(38, s)` holds exactly: keep its text.
    Inexact,
}

impl Number {
    /// The scale of this value (0 for integers).
    pub fn scale(&self) -> u8 {
        match self {
            Number::Decimal { scale, .. } => *scale,
            _ => 0,
        }
    }

    /// The integer digits this value needs (0 for zero).
    pub fn int_digits(&self) -> u8 {
        match self {
            Number::Int(i) => {
                let mut n = i.unsigned_abs();
                let mut digits = 0;
                while n > 0 {
                    digits += 1;
                    n /= 10;
                }
                digits
            }
            Number::Decimal { int_digits, .. } => *int_digits,
            Number::Inexact => MAX_PRECISION + 1,
        }
    }

    /// Whether `decimal(38, scale)` holds this value exactly.
    pub fn fits(&self, scale: u8) -> bool {
        !matches!(self, Number::Inexact)
            && self.scale() <= scale
            && u16::from(self.int_digits()) + u16::from(scale) <= u16::from(MAX_PRECISION)
    }

    /// Whether `decimal(precision, scale)` holds this value exactly (a declared column may
    /// be narrower than [`MAX_PRECISION`]).
    pub fn fits_in(&self, precision: u8, scale: u8) -> bool {
        precision <= MAX_PRECISION
            && self.fits(scale)
            && u16::from(self.int_digits()) + u16::from(scale) <= u16::from(precision)
    }

    /// The unscaled value at `scale` (at least this value's own scale), if it fits.
    pub fn unscaled_at(&self, scale: u8) -> Option<i128> {
        if !self.fits(scale) {
            return None;
        }
        let (unscaled, own) = match *self {
            Number::Int(i) => (i128::from(i), 0),
            Number::Decimal {
                unscaled, scale, ..
            } => (unscaled, scale),
            Number::Inexact => return None,
        };
        10i128
            .checked_pow(u32::from(scale - own))
            .and_then(|m| unscaled.checked_mul(m))
    }
}

/// Whether two columns' scales can be merged into one `decimal(38, s)` holding values
/// of up to `int_digits` integer digits.
pub fn decimal_fits(int_digits: u8, scale: u8) -> bool {
    u16::from(int_digits) + u16::from(scale) <= u16::from(MAX_PRECISION)
}

/// Classify `text` by the policy in the module docs; `None` when it is not a number
/// literal at all (so it is text).
pub fn parse(text: &str) -> Option<Number> {
    let b = text.as_bytes();
    let mut i = 0;
    let negative = b.first() == Some(&b'-');
    if negative {
        i += 1;
    }
    let int_start = i;
    match b.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => {
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
        }
        _ => return None,
    }
    let int_part = &text[int_start..i];
    let mut frac_part = "";
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        i = start;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return None;
        }
        frac_part = &text[start..i];
    }
    let mut exponent: i64 = 0;
    let mut has_exponent = false;
    if matches!(b.get(i), Some(b'e' | b'E')) {
        has_exponent = true;
        i += 1;
        let exp_negative = match b.get(i) {
            Some(b'-') => {
                i += 1;
                true
            }
            Some(b'+') => {
                i += 1;
                false
            }
            _ => false,
        };
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            // Saturate: an exponent this large makes the value Inexact anyway.
            exponent = (exponent * 10 + i64::from(b[i] - b'0')).min(1_000_000);
            i += 1;
        }
        if i == start {
            return None;
        }
        if exp_negative {
            exponent = -exponent;
        }
    }
    if i != b.len() {
        return None;
    }
    if frac_part.is_empty()
        && !has_exponent
        && let Ok(v) = text.parse::<i64>()
    {
        return Some(Number::Int(v));
    }
    // value = digits × 10^(exponent - frac_len)
    let digits: String = [int_part, frac_part].concat();
    let shift = exponent - frac_part.len() as i64;
    let trimmed = digits.trim_start_matches('0');
    let (unscaled_digits, scale) = if shift >= 0 {
        if trimmed.is_empty() {
            (String::new(), 0u64)
        } else {
            let zeros = usize::try_from(shift).unwrap_or(usize::MAX);
            if trimmed.len().saturating_add(zeros) > usize::from(MAX_PRECISION) {
                return Some(Number::Inexact);
            }
            (format!("{trimmed}{}", "0".repeat(zeros)), 0)
        }
    } else {
        (trimmed.to_string(), shift.unsigned_abs())
    };
    if scale > u64::from(MAX_PRECISION) || unscaled_digits.len() > usize::from(MAX_PRECISION) {
        return Some(Number::Inexact);
    }
    let scale = scale as u8;
    let len = unscaled_digits.len() as u8;
    let int_digits = len.saturating_sub(scale);
    if u16::from(int_digits) + u16::from(scale) > u16::from(MAX_PRECISION) {
        return Some(Number::Inexact);
    }
    let magnitude: i128 = if unscaled_digits.is_empty() {
        0
    } else {
        match unscaled_digits.parse() {
            Ok(v) => v,
            Err(_) => return Some(Number::Inexact),
        }
    };
    Some(Number::Decimal {
        unscaled: if negative { -magnitude } else { magnitude },
        scale,
        int_digits,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(unscaled: i128, scale: u8, int_digits: u8) -> Option<Number> {
        Some(Number::Decimal {
            unscaled,
            scale,
            int_digits,
        })
    }

    #[test]
    fn integers_within_i64_are_int_and_beyond_are_exact_decimals() {
        assert_eq!(parse("0"), Some(Number::Int(0)));
        assert_eq!(parse("-0"), Some(Number::Int(0)));
        assert_eq!(parse("42"), Some(Number::Int(42)));
        assert_eq!(parse("-9223372036854775808"), Some(Number::Int(i64::MIN)));
        assert_eq!(
            parse("18446744073709551615"),
            dec(18_446_744_073_709_551_615, 0, 20)
        );
        assert_eq!(parse(&"9".repeat(38)), dec(10i128.pow(38) - 1, 0, 38));
        assert_eq!(parse(&"9".repeat(39)), Some(Number::Inexact));
    }

    #[test]
    fn fractions_keep_their_scale_and_exponents_are_applied() {
        assert_eq!(parse("12.50"), dec(1250, 2, 2));
        assert_eq!(parse("0.10"), dec(10, 2, 0));
        assert_eq!(parse("-0.0"), dec(0, 1, 0));
        assert_eq!(
            parse("12345678901234567890.12"),
            dec(1_234_567_890_123_456_789_012, 2, 20)
        );
        assert_eq!(parse("1.5e2"), dec(150, 0, 3));
        assert_eq!(parse("1.5E-3"), dec(15, 4, 0));
        assert_eq!(parse("1e0"), dec(1, 0, 1));
        assert_eq!(parse("0e10"), dec(0, 0, 0));
        assert_eq!(parse("1e38"), Some(Number::Inexact));
        assert_eq!(parse("1e-40"), Some(Number::Inexact));
        assert_eq!(parse("1e999999999999"), Some(Number::Inexact));
        // 17+ significant digits stay exact.
        assert_eq!(
            parse("0.30000000000000000444"),
            dec(30_000_000_000_000_000_444, 20, 0)
        );
    }

    #[test]
    fn only_the_json_number_grammar_is_a_number() {
        for text in [
            "",
            "-",
            "+5",
            "007",
            "-01",
            ".5",
            "5.",
            "1e",
            "1e+",
            " 5",
            "5 ",
            "1,5",
            "NaN",
            "nan",
            "Infinity",
            "-Infinity",
            "0x10",
            "1_000",
            "١",
        ] {
            assert_eq!(parse(text), None, "{text:?}");
        }
    }

    #[test]
    fn fitting_and_rescaling() {
        let n = parse("12.5").unwrap();
        assert!(n.fits(1) && n.fits(36) && !n.fits(37) && !n.fits(0));
        assert_eq!(n.unscaled_at(3), Some(12500));
        assert_eq!(Number::Int(7).unscaled_at(2), Some(700));
        assert!(Number::Int(i64::MAX).fits(19) && !Number::Int(i64::MAX).fits(20));
        assert!(Number::Int(1).fits(37) && Number::Int(0).fits(38));
        assert!(!Number::Inexact.fits(0));
        assert!(decimal_fits(19, 19) && !decimal_fits(20, 19));
        let n = parse("1234567890123.45").unwrap();
        assert!(n.fits_in(18, 2) && n.fits_in(15, 2) && !n.fits_in(14, 2) && !n.fits_in(18, 1));
        assert!(Number::Int(0).fits_in(1, 1) && !Number::Inexact.fits_in(38, 0));
    }
}
