//! German IBANs with correct check digits (ISO 13616, mod 97), so that the sample customers'
//! bank accounts pass any validation a service or a client applies to them.

/// The IBAN of account `account` (at most 10 digits) at the bank with the 8-digit German bank
/// code `bank_code`: `DE`, two check digits, then the 18-digit BBAN.
pub fn german(bank_code: u32, account: u64) -> String {
    let bban = format!(
        "{:08}{:010}",
        bank_code % 100_000_000,
        account % 10_000_000_000
    );
    // The check digits make the number `BBAN + "DE" + check` leave 1 modulo 97, with the
    // letters spelled as numbers (D = 13, E = 14); computed with check digits 00 first.
    let remainder = mod97(bban.bytes().chain(*b"131400"));
    let check = 98 - remainder;
    format!("DE{check:02}{bban}")
}

/// The remainder modulo 97 of the decimal number spelled by `digits` (ASCII), of any length.
fn mod97(digits: impl IntoIterator<Item = u8>) -> u32 {
    digits.into_iter().fold(0, |remainder, digit| {
        (remainder * 10 + u32::from(digit - b'0')) % 97
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ISO 13616 validation: move the first four characters to the end, spell letters as
    /// numbers (A = 10 … Z = 35) and expect a remainder of 1 modulo 97.
    fn is_valid(iban: &str) -> bool {
        let (head, tail) = iban.split_at(4);
        let digits: String = tail
            .chars()
            .chain(head.chars())
            .map(|c| match c.to_digit(36) {
                Some(value) => value.to_string(),
                None => "#".to_owned(),
            })
            .collect();
        digits.bytes().all(|b| b.is_ascii_digit()) && mod97(digits.bytes()) == 1
    }

    #[test]
    fn the_known_example_is_valid_and_reproduced() {
        assert!(is_valid("DE89370400440532013000"));
        assert!(!is_valid("DE88370400440532013000"));
        assert!(!is_valid("DE89370400440532013001"));
        assert_eq!(german(37_040_044, 532_013_000), "DE89370400440532013000");
    }

    #[test]
    fn generated_ibans_are_valid_and_complete() {
        fn check(bank_code: u32, account: u64) {
            let iban = german(bank_code, account);
            assert_eq!(iban.len(), 22, "{iban}");
            assert!(is_valid(&iban), "{iban}");
        }
        for account in [0, 1, 42, 96, 97, 98, 9_999_999_999] {
            check(37_040_044, account);
            check(10_000_000, account);
            check(99_999_999, account);
        }
    }
}
