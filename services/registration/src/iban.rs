//! IBAN checksum (ISO 13616 / ISO 7064 mod 97-10), so typos are caught at the owner.

/// The IBAN of `bban` in `country` (two upper-case letters) with its check digits computed,
/// or `None` when the parts are not upper-case letters and digits.
///
/// ```
/// assert_eq!(registration::iban("DE", "370400440532013000").as_deref(), Some("DE89370400440532013000"));
/// ```
pub fn iban(country: &str, bban: &str) -> Option<String> {
    let shape_ok = country.len() == 2
        && country.bytes().all(|b| b.is_ascii_uppercase())
        && bban
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
    if !shape_ok {
        return None;
    }
    // With check digits 00 the remainder r tells them: 98 - r makes the whole leave 1.
    let remainder = mod97(bban.bytes().chain(country.bytes()).chain(*b"00"));
    Some(format!("{country}{:02}{bban}", 98 - remainder))
}

/// Whether `iban` (upper case, no spaces) has a valid structure and check digits.
pub fn iban_is_valid(iban: &str) -> bool {
    let bytes = iban.as_bytes();
    let shape_ok = (15..=34).contains(&bytes.len())
        && bytes[..2].iter().all(u8::is_ascii_uppercase)
        && bytes[2..4].iter().all(u8::is_ascii_digit)
        && bytes[4..]
            .iter()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
    if !shape_ok {
        return false;
    }
    // Move the country and check digits to the end, then the number must leave 1 mod 97.
    mod97(bytes[4..].iter().chain(&bytes[..4]).copied()) == 1
}

/// The remainder modulo 97 of the number an IBAN's characters spell, letters as 10..35.
fn mod97(characters: impl IntoIterator<Item = u8>) -> u32 {
    characters.into_iter().fold(0, |remainder, byte| {
        if byte.is_ascii_digit() {
            (remainder * 10 + u32::from(byte - b'0')) % 97
        } else {
            (remainder * 100 + u32::from(byte - b'A') + 10) % 97
        }
    })
}

#[cfg(test)]
mod tests {
    use super::{iban, iban_is_valid};

    #[test]
    fn iban_table() {
        let check =
            |iban: &str, expected: bool| assert_eq!(iban_is_valid(iban), expected, "{iban}");
        check("DE89370400440532013000", true);
        check("GB82WEST12345698765432", true);
        check("NL91ABNA0417164300", true);
        check("DE12500105170648489890", true);
        check("DE12500105170648489891", false);
        check("DE89370400440532013001", false);
        check("DE8937040044053201300", false);
        check("de89370400440532013000", false);
        check("", false);
        check("XX", false);
    }

    #[test]
    fn check_digits_are_computed() {
        assert_eq!(
            iban("DE", "370400440532013000").as_deref(),
            Some("DE89370400440532013000")
        );
        assert_eq!(
            iban("GB", "WEST12345698765432").as_deref(),
            Some("GB82WEST12345698765432")
        );
        for account in [0u64, 1, 96, 97, 98, 9_999_999_999] {
            let made = iban("DE", &format!("37040044{account:010}")).expect("valid parts");
            assert!(iban_is_valid(&made), "{made}");
        }
        assert_eq!(iban("de", "1"), None);
    }
}
