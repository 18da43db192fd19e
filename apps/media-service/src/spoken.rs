//! What a listener hears of a translation: the TTS (espeak-ng) reads digits as words of the
//! target language, so "7, 8, 9" is heard as "siete, ocho, nueve". `media-service dub`
//! prints this form next to the translation, so the printout shows the dubbing that the
//! digits alone hide. Only Spanish is spelled out; other languages are returned unchanged.

/// Largest number spelled out; longer digit runs are left as digits.
pub const MAX_SPELLED: u64 = 999_999;

const UNITS: [&str; 30] = [
    "cero",
    "uno",
    "dos",
    "tres",
    "cuatro",
    "cinco",
    "seis",
    "siete",
    "ocho",
    "nueve",
    "diez",
    "once",
    "doce",
    "trece",
    "catorce",
    "quince",
    "dieciséis",
    "diecisiete",
    "dieciocho",
    "diecinueve",
    "veinte",
    "veintiuno",
    "veintidós",
    "veintitrés",
    "veinticuatro",
    "veinticinco",
    "veintiséis",
    "veintisiete",
    "veintiocho",
    "veintinueve",
];
const TENS: [&str; 10] = [
    "",
    "",
    "",
    "treinta",
    "cuarenta",
    "cincuenta",
    "sesenta",
    "setenta",
    "ochenta",
    "noventa",
];
const HUNDREDS: [&str; 10] = [
    "",
    "ciento",
    "doscientos",
    "trescientos",
    "cuatrocientos",
    "quinientos",
    "seiscientos",
    "setecientos",
    "ochocientos",
    "novecientos",
];

fn below_thousand(n: u64) -> String {
    debug_assert!(n < 1000);
    let (h, r) = ((n / 100) as usize, n % 100);
    let rest = match r {
        0 => String::new(),
        r if r < 30 => UNITS[r as usize].to_string(),
        r if r % 10 == 0 => TENS[(r / 10) as usize].to_string(),
        r => format!("{} y {}", TENS[(r / 10) as usize], UNITS[(r % 10) as usize]),
    };
    match (h, rest.is_empty()) {
        (0, _) => rest,
        (1, true) => "cien".into(),
        (h, true) => HUNDREDS[h].into(),
        (h, false) => format!("{} {rest}", HUNDREDS[h]),
    }
}

/// `n` in Spanish words (0..=[`MAX_SPELLED`]); `None` beyond.
pub fn spanish_number(n: u64) -> Option<String> {
    if n > MAX_SPELLED {
        return None;
    }
    if n == 0 {
        return Some(UNITS[0].into());
    }
    if n < 1000 {
        return Some(below_thousand(n));
    }
    let (th, r) = (n / 1000, n % 1000);
    // "uno" drops its last vowel before a noun: "un mil" is said "mil", "veintiún mil".
    let th_words = match th {
        1 => String::new(),
        t => {
            let w = below_thousand(t);
            let w = if let Some(s) = w.strip_suffix("veintiuno") {
                format!("{s}veintiún")
            } else if let Some(s) = w.strip_suffix("uno") {
                format!("{s}un")
            } else {
                w
            };
            format!("{w} ")
        }
    };
    let rest = if r == 0 {
        String::new()
    } else {
        format!(" {}", below_thousand(r))
    };
    Some(format!("{th_words}mil{rest}"))
}

/// `text` as the TTS speaks it in `language`: digit runs spelled out for Spanish.
pub fn spoken_form(text: &str, language: &str) -> String {
    if language.split(['-', '_']).next() != Some("es") {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len() * 2);
    let mut digits = String::new();
    let flush = |digits: &mut String, out: &mut String| {
        if digits.is_empty() {
            return;
        }
        match digits.parse::<u64>().ok().and_then(spanish_number) {
            Some(w) => out.push_str(&w),
            None => out.push_str(digits),
        }
        digits.clear();
    };
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
        } else {
            flush(&mut digits, &mut out);
            out.push(c);
        }
    }
    flush(&mut digits, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_in_spanish() {
        let cases = [
            (0, "cero"),
            (1, "uno"),
            (16, "dieciséis"),
            (21, "veintiuno"),
            (30, "treinta"),
            (31, "treinta y uno"),
            (100, "cien"),
            (101, "ciento uno"),
            (555, "quinientos cincuenta y cinco"),
            (1000, "mil"),
            (1999, "mil novecientos noventa y nueve"),
            (21_000, "veintiún mil"),
            (31_001, "treinta y un mil uno"),
            (200_000, "doscientos mil"),
        ];
        for (n, w) in cases {
            assert_eq!(spanish_number(n).as_deref(), Some(w), "{n}");
        }
        assert_eq!(spanish_number(1_000_000), None);
    }

    #[test]
    fn the_demo_translation_as_heard() {
        assert_eq!(
            spoken_form("7, 8, 9, 10, 11 12", "es"),
            "siete, ocho, nueve, diez, once doce"
        );
        assert_eq!(spoken_form("Hola, 3 gatos.", "es-MX"), "Hola, tres gatos.");
        assert_eq!(spoken_form("1234567", "es"), "1234567");
        assert_eq!(spoken_form("7, 8", "fr"), "7, 8");
    }
}
