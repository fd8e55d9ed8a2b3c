//! IBAN checksum (ISO 13616 / ISO 7064 mod 97-10), so typos are caught at the owner.

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
    // Move the country and check digits to the end, letters become 10..35, then mod 97 == 1.
    let rearranged = bytes[4..].iter().chain(&bytes[..4]);
    let mut remainder: u32 = 0;
    for byte in rearranged {
        let value = if byte.is_ascii_digit() {
            u32::from(byte - b'0')
        } else {
            u32::from(byte - b'A') + 10
        };
        remainder = if value >= 10 {
            (remainder * 100 + value) % 97
        } else {
            (remainder * 10 + value) % 97
        };
    }
    remainder == 1
}

#[cfg(test)]
mod tests {
    use super::iban_is_valid;

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
}
