//! Walking a paginated list a page per `next` call.

/// A cursor over pages: the plugin keeps one in its read state, asks for the next
/// position, and records where the following page starts.
///
/// ```
/// # use inlet_pdk::Pages;
/// // A list of ids read 3 at a time.
/// let ids = [1u64, 2, 3, 4, 5, 6, 7];
/// let mut pages = Pages::new(0usize);
/// let mut seen = Vec::new();
/// while let Some(start) = pages.current() {
///     let page = &ids[start..(start + 3).min(ids.len())];
///     seen.extend_from_slice(page);
///     let next = start + page.len();
///     pages.advance((next < ids.len()).then_some(next));
/// }
/// assert_eq!(seen, ids);
/// ```
#[derive(Debug, Clone)]
pub struct Pages<C> {
    next: Option<C>,
    fetched: u64,
}

impl<C: Clone> Pages<C> {
    /// Start at `first`.
    pub fn new(first: C) -> Self {
        Pages {
            next: Some(first),
            fetched: 0,
        }
    }

    /// A finished walk.
    pub fn done() -> Self {
        Pages {
            next: None,
            fetched: 0,
        }
    }

    /// Where the next page starts, `None` when there is none.
    pub fn current(&self) -> Option<C> {
        self.next.clone()
    }

    /// Record that a page was read and where the next one starts (`None`: last page).
    pub fn advance(&mut self, next: Option<C>) {
        self.fetched += 1;
        self.next = next;
    }

    /// Pages read so far.
    pub fn fetched(&self) -> u64 {
        self.fetched
    }
}
