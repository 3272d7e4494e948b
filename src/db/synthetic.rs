//! Deterministic synthetic books for load tests: realistic author and title shapes, unique
//! ISBN-13s, the same list on every run and every machine.

use super::Book;

#[rustfmt::skip]
const FIRST_NAMES: [&str; 40] = [
    "Ada", "Alan", "Alice", "Barbara", "Bjarne", "Brian", "Carol", "Charles", "Dennis", "Donald",
    "Edsger", "Elena", "Frances", "Grace", "Guido", "Hedy", "Ivan", "Jean", "John", "Karen",
    "Ken", "Leslie", "Linus", "Margaret", "Mary", "Niklaus", "Olga", "Peter", "Radia", "Robert",
    "Rob", "Shafi", "Sophie", "Tim", "Tony", "Ursula", "Valerie", "Whitfield", "Xiao", "Yukihiro",
];

#[rustfmt::skip]
const LAST_NAMES: [&str; 60] = [
    "Abelson", "Aho", "Backus", "Bentley", "Brooks", "Cerf", "Codd", "Conway", "Dijkstra",
    "Engelbart", "Feigenbaum", "Floyd", "Goldberg", "Gray", "Hamming", "Hartmanis", "Hoare",
    "Hopper", "Iverson", "Jacobson", "Kahan", "Kay", "Kernighan", "Knuth", "Lamport", "Liskov",
    "Lovelace", "Matsumoto", "McCarthy", "Milner", "Minsky", "Naur", "Newell", "Nygaard",
    "Pike", "Perlis", "Rabin", "Ritchie", "Rivest", "Sammet", "Scott", "Sedgewick", "Shamir",
    "Simon", "Stroustrup", "Sutherland", "Tanenbaum", "Tarjan", "Thompson", "Torvalds",
    "Turing", "Ullman", "Valiant", "Wirth", "Wilkes", "Wing", "Yao", "Zuse", "Zhang", "Ziv",
];

#[rustfmt::skip]
const ADJECTIVES: [&str; 24] = [
    "Practical", "Elegant", "Concurrent", "Functional", "Distributed", "Modern", "Essential",
    "Applied", "Structured", "Portable", "Reliable", "Secure", "Parallel", "Incremental",
    "Literate", "Formal", "Pragmatic", "Efficient", "Gentle", "Complete", "Hidden", "Lost",
    "Quiet", "Unexpected",
];

#[rustfmt::skip]
const SUBJECTS: [&str; 30] = [
    "Algorithms", "Compilers", "Databases", "Networks", "Operating Systems", "Programming",
    "Type Systems", "Cryptography", "Graphics", "Interpreters", "Data Structures", "Testing",
    "Debugging", "Software Design", "Concurrency", "Logic", "Automata", "Storage", "Search",
    "Parsing", "Protocols", "Security", "Pipelines", "Caching", "Scheduling", "Proofs",
    "Languages", "Machines", "Numbers", "Patterns",
];

/// The `index`-th synthetic book (from 0). ISBNs are 979-prefixed, so none collides with a
/// real-looking 978 one or with penny.sql's three.
pub fn book(index: u64) -> Book {
    let mut state = index;
    let mut pick = |n: usize| (splitmix64(&mut state) % n as u64) as usize;
    let author = format!(
        "{} {}",
        LAST_NAMES[pick(LAST_NAMES.len())],
        FIRST_NAMES[pick(FIRST_NAMES.len())]
    );
    let title = match pick(3) {
        0 => format!(
            "{} {}",
            ADJECTIVES[pick(ADJECTIVES.len())],
            SUBJECTS[pick(SUBJECTS.len())]
        ),
        1 => format!(
            "The {} of {}, Volume {}",
            SUBJECTS[pick(SUBJECTS.len())],
            SUBJECTS[pick(SUBJECTS.len())],
            1 + pick(9)
        ),
        _ => format!(
            "{} for the {} Programmer",
            SUBJECTS[pick(SUBJECTS.len())],
            ADJECTIVES[pick(ADJECTIVES.len())]
        ),
    };
    Book::new(&isbn13(979_000_000_000 + index), &author, &title)
}

/// The ISBN-13 with the given first twelve digits and its check digit.
fn isbn13(first_twelve: u64) -> String {
    let digits = format!("{first_twelve:012}");
    let sum: u32 = digits
        .bytes()
        .enumerate()
        .map(|(i, d)| u32::from(d - b'0') * if i % 2 == 0 { 1 } else { 3 })
        .sum();
    format!("{digits}{}", (10 - sum % 10) % 10)
}

/// SplitMix64: a small, well-mixed generator; seeded by the book's index, so any book can be
/// made on its own, in any order, the same everywhere.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn isbns_are_valid_and_unique() {
        assert_eq!(isbn13(978_030_640_615), "9780306406157");
        let isbns: std::collections::HashSet<String> =
            (0..10_000).map(|i| book(i).isbn().to_owned()).collect();
        assert_eq!(isbns.len(), 10_000);
    }

    #[test]
    fn the_same_index_gives_the_same_book() {
        assert_eq!(book(42), book(42));
        assert_ne!(book(42).author(), book(43).author());
        assert!(book(7).author().contains(' '));
    }
}
