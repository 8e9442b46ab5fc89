//! Fixed-size windows for the streaming indicators: a ring of the last `n` values and a
//! monotonic min/max window, both allocated once at construction (never per bar).

/// The last `len` values of a series, oldest overwritten first. Slots start at `0.0`, so
/// during warm-up the value "leaving" the window is an exact `0.0`: subtracting it from a
/// running total leaves the total bit-identical, which lets the running-sum indicators share
/// one branch-free update with TA-Lib's separate warm-up loop.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct Ring {
    slots: Box<[f64]>,
    pos: usize,
}

impl Ring {
    /// A ring of `len >= 1` slots, all `0.0`.
    pub(crate) fn new(len: usize) -> Self {
        Ring {
            slots: vec![0.0; len.max(1)].into_boxed_slice(),
            pos: 0,
        }
    }

    /// Stores `x` and returns the value stored `len` pushes ago (`0.0` before that).
    #[inline]
    pub(crate) fn delay(&mut self, x: f64) -> f64 {
        let old = std::mem::replace(&mut self.slots[self.pos], x);
        self.advance();
        old
    }

    /// Stores `x` and returns the oldest value of the window of the last `len` values that
    /// ends with `x` (the value stored `len - 1` pushes ago; `0.0` before that).
    #[inline]
    pub(crate) fn push_window(&mut self, x: f64) -> f64 {
        self.slots[self.pos] = x;
        self.advance();
        self.slots[self.pos]
    }

    /// The slots in physical order (slot `i` holds the value of push number `k` with
    /// `k % len == i`): TA-Lib's CCI sums its circular buffer in this order.
    #[inline]
    pub(crate) fn slots(&self) -> &[f64] {
        &self.slots
    }

    #[inline]
    fn advance(&mut self) {
        self.pos += 1;
        if self.pos == self.slots.len() {
            self.pos = 0;
        }
    }
}

/// Whether a [`MinMaxWindow`] tracks the lowest or the highest value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) enum Extreme {
    Lowest,
    Highest,
}

/// The lowest (or highest) of the last `len` values, tracked as TA-Lib's STOCH does: keep the
/// extreme and its bar; a new value at least as extreme replaces it; when it leaves the
/// window, rescan the window (oldest first, strict comparison). Expected O(1) per bar on
/// prices (a rescan, O(len), happens when the extreme expires), no allocation after
/// construction.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct MinMaxWindow {
    extreme: Extreme,
    values: Ring,
    len: usize,
    /// Bars pushed so far.
    bar: usize,
    /// Bar of the current extreme plus one (0: none yet).
    extreme_bar_end: usize,
    value: f64,
}

impl MinMaxWindow {
    /// A window over the last `len >= 1` values.
    pub(crate) fn new(len: usize, extreme: Extreme) -> Self {
        let len = len.max(1);
        MinMaxWindow {
            extreme,
            values: Ring::new(len),
            len,
            bar: 0,
            extreme_bar_end: 0,
            value: f64::NAN,
        }
    }

    /// Adds `x` as the newest value and returns the extreme of the last `len` values (of all
    /// values so far while fewer than `len`).
    #[inline]
    pub(crate) fn push(&mut self, x: f64) -> f64 {
        let bar = self.bar;
        self.bar += 1;
        self.values.delay(x);
        // The extreme has left the window [bar + 1 - len, bar] (or there is none yet).
        if self.extreme_bar_end == 0 || self.extreme_bar_end + self.len <= bar + 1 {
            self.rescan();
        } else if self.more_extreme_or_equal(x) {
            self.value = x;
            self.extreme_bar_end = bar + 1;
        }
        self.value
    }

    #[inline]
    fn more_extreme_or_equal(&self, x: f64) -> bool {
        match self.extreme {
            Extreme::Lowest => x <= self.value,
            Extreme::Highest => x >= self.value,
        }
    }

    /// Scans the window oldest first; the first of equal extremes wins (TA-Lib's strict
    /// comparison).
    fn rescan(&mut self) {
        let count = self.bar.min(self.len);
        let first_bar = self.bar - count;
        // The ring's next slot holds the oldest value once it is full; before that the values
        // sit in slots 0..count.
        let slots = self.values.slots();
        let start = if self.bar >= self.len {
            self.bar % self.len
        } else {
            0
        };
        let mut best = slots[start];
        let mut best_offset = 0;
        for offset in 1..count {
            let value = slots[wrap(start + offset, self.len)];
            let better = match self.extreme {
                Extreme::Lowest => value < best,
                Extreme::Highest => value > best,
            };
            if better {
                best = value;
                best_offset = offset;
            }
        }
        self.value = best;
        self.extreme_bar_end = first_bar + best_offset + 1;
    }
}

/// `index % len` for `index < 2 * len`, without a division.
#[inline]
fn wrap(index: usize, len: usize) -> usize {
    if index >= len { index - len } else { index }
}
