//! Word errors of a transcript against a reference text.
//!
//! Both ASR benchmarks (`sts-bench` on fragments, `bench-live` on whole live streams) count
//! word errors here, so a word error rate means the same thing in every table: words are
//! compared lower-case, with punctuation other than the apostrophe dropped, and an error is
//! one substitution, insertion or deletion.

/// Lower-case words of `text`, punctuation (except `'`) dropped; words left empty vanish.
pub fn words(text: &str) -> Vec<String> {
    text.split_whitespace()
        .map(|w| {
            w.chars()
                .filter(|c| c.is_alphanumeric() || *c == '\'')
                .collect::<String>()
                .to_lowercase()
        })
        .filter(|w| !w.is_empty())
        .collect()
}

/// Word-level edit distance (substitutions, insertions, deletions) of `heard` against the
/// whole of `reference`.
pub fn word_errors(reference: &str, heard: &str) -> usize {
    let (r, h) = (words(reference), words(heard));
    let mut prev: Vec<usize> = (0..=h.len()).collect();
    for (i, rw) in r.iter().enumerate() {
        let mut cur = vec![i + 1; h.len() + 1];
        for (j, hw) in h.iter().enumerate() {
            let sub = prev[j] + usize::from(rw != hw);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[h.len()]
}

/// Word errors of `heard` against the beginning of `reference` that fits it best (a live
/// stream cut short holds only the start of a passage): `(errors, reference words judged)`,
/// from the edit distance of the two word sequences with the reference's tail free. Ties go
/// to the longer prefix (more words judged).
pub fn prefix_word_errors(reference: &str, heard: &str) -> (usize, usize) {
    let (r, h) = (words(reference), words(heard));
    // d[j]: edits turning the heard words so far into the first j reference words.
    let mut d: Vec<usize> = (0..=r.len()).collect();
    for (i, hw) in h.iter().enumerate() {
        let mut prev_diag = d[0];
        d[0] = i + 1;
        for j in 1..=r.len() {
            let sub = prev_diag + usize::from(*hw != r[j - 1]);
            prev_diag = d[j];
            d[j] = sub.min(d[j] + 1).min(d[j - 1] + 1);
        }
    }
    d.iter()
        .enumerate()
        .min_by_key(|&(j, &e)| (e, std::cmp::Reverse(j)))
        .map(|(j, &e)| (e, j))
        .unwrap_or((h.len(), 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_drop_case_and_punctuation_but_keep_apostrophes() {
        assert_eq!(words("Don't  STOP, now!"), ["don't", "stop", "now"]);
        assert_eq!(words(" -- ... "), Vec::<String>::new());
    }

    #[test]
    fn word_errors_count_edits() {
        assert_eq!(
            word_errors("The music is too loud.", "the music is too loud"),
            0
        );
        assert_eq!(
            word_errors("The music is too loud.", "The muse is loud."),
            2
        );
        assert_eq!(word_errors("I have two cats.", ""), 4);
        assert_eq!(
            word_errors("I have two cats.", "I have two cats and dogs"),
            2
        );
    }

    #[test]
    fn prefix_word_errors_judge_the_passage_prefix_that_was_heard() {
        let r = "The North Wind and the Sun were disputing which was the stronger";
        assert_eq!(prefix_word_errors(r, "the north wind and the sun"), (0, 6));
        assert_eq!(
            prefix_word_errors(r, "The North wind, and the son."),
            (1, 6)
        );
        // A word cut in half at a boundary: one substitution and one insertion.
        assert_eq!(prefix_word_errors(r, "the north win d and the sun"), (2, 6));
        // Nothing heard: nothing judged; wrong words all count.
        assert_eq!(prefix_word_errors(r, ""), (0, 0));
        assert_eq!(prefix_word_errors(r, "hello there"), (2, 2));
        assert_eq!(
            prefix_word_errors(r, "the north wind and the sun were disputing which"),
            (0, 9)
        );
    }
}
