//! Line framing: find line ends with `memchr`, hand out offsets, copy nothing.
//!
//! Two layers. [`Lines`] frames one in-memory block that is known to end on a
//! line boundary (or at end of input). [`BlockReader`] cuts an arbitrary
//! [`Read`] into such blocks with a bounded buffer, so a reader never holds
//! more than `block_size + max_line` bytes, however long a line is.

use std::io::{self, Read};

use memchr::{memchr, memrchr};

/// Default longest line accepted: 1 MiB.
pub const DEFAULT_MAX_LINE: usize = 1 << 20;

/// Default block size handed to a parser thread: 4 MiB.
pub const DEFAULT_BLOCK_SIZE: usize = 4 << 20;

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// One framed line: its 1-based number in the stream and its bytes, without
/// the line terminator (`\n` or `\r\n`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Line<'a> {
    pub number: u64,
    pub bytes: &'a [u8],
    /// Set when the line is longer than the limit; `bytes` is then cut to the limit.
    pub too_long: Option<usize>,
}

/// Iterator over the non-blank lines of one block.
///
/// Blank lines (empty or only `\r`) are skipped but still counted, so line
/// numbers match what an editor shows. A final line without a newline is
/// yielded like any other.
///
/// ```
/// use weft_scan::lines::Lines;
/// let block = b"{\"a\":1}\r\n\n{\"b\":2}";
/// let got: Vec<(u64, &[u8])> = Lines::new(block, 1, 1024).map(|l| (l.number, l.bytes)).collect();
/// assert_eq!(got, vec![(1, &b"{\"a\":1}"[..]), (3, &b"{\"b\":2}"[..])]);
/// ```
#[derive(Debug, Clone)]
pub struct Lines<'a> {
    block: &'a [u8],
    pos: usize,
    next_number: u64,
    max_line: usize,
}

impl<'a> Lines<'a> {
    /// Frames `block`, numbering its first line `first_number`.
    pub fn new(block: &'a [u8], first_number: u64, max_line: usize) -> Self {
        Self {
            block,
            pos: 0,
            next_number: first_number,
            max_line,
        }
    }
}

impl<'a> Iterator for Lines<'a> {
    type Item = Line<'a>;

    fn next(&mut self) -> Option<Line<'a>> {
        while self.pos < self.block.len() {
            let rest = &self.block[self.pos..];
            let (mut line, advance) = match memchr(b'\n', rest) {
                Some(i) => (&rest[..i], i + 1),
                None => (rest, rest.len()),
            };
            self.pos += advance;
            let number = self.next_number;
            self.next_number += 1;
            if let [head @ .., b'\r'] = line {
                line = head;
            }
            if line.is_empty() {
                continue;
            }
            if line.len() > self.max_line {
                return Some(Line {
                    number,
                    bytes: &line[..self.max_line],
                    too_long: Some(line.len()),
                });
            }
            return Some(Line {
                number,
                bytes: line,
                too_long: None,
            });
        }
        None
    }
}

/// Counts line terminators in a block (used to number the next block's lines).
pub fn count_newlines(block: &[u8]) -> u64 {
    memchr::memchr_iter(b'\n', block).count() as u64
}

/// A block of whole lines read from a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Block {
    /// Whole lines (the last one may lack its newline at end of stream).
    Lines { first_line: u64, bytes: Vec<u8> },
    /// A line too long to hold: its first `max_line` bytes and its full length.
    /// The rest of it was read and discarded.
    Oversized {
        line: u64,
        prefix: Vec<u8>,
        len: usize,
    },
}

/// Cuts a byte stream into blocks that end on line boundaries.
///
/// Memory stays bounded: a line longer than `max_line` is never buffered
/// whole; its first `max_line` bytes come back as [`Block::Oversized`] and
/// the reader skips to the next newline. A UTF-8 byte order mark at the very
/// start of the stream is dropped.
#[derive(Debug)]
pub struct BlockReader<R> {
    inner: R,
    buf: Vec<u8>,
    /// `buf[..filled]` holds bytes read but not yet handed out.
    filled: usize,
    block_size: usize,
    max_line: usize,
    next_line: u64,
    at_start: bool,
    eof: bool,
    bytes_read: u64,
}

impl<R: Read> BlockReader<R> {
    pub fn new(inner: R, block_size: usize, max_line: usize) -> Self {
        let block_size = block_size.max(1);
        Self {
            inner,
            buf: Vec::new(),
            filled: 0,
            block_size,
            max_line: max_line.max(1),
            next_line: 1,
            at_start: true,
            eof: false,
            bytes_read: 0,
        }
    }

    /// Bytes consumed from the underlying reader so far.
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read
    }

    /// The capacity the buffer may grow to: one block plus one longest line.
    fn capacity(&self) -> usize {
        self.block_size + self.max_line + 1
    }

    /// Reads until at least `want` bytes are buffered, the buffer is at
    /// capacity, or the stream ends.
    ///
    /// The first call does not return before the BOM question is settled (3
    /// bytes seen or end of stream; the capacity is never smaller), so nothing
    /// is searched or handed out before a BOM is dropped, and dropping one
    /// never leaves the buffer short of `want`, however short the reads are.
    fn fill_to(&mut self, want: usize) -> io::Result<()> {
        let cap = self.capacity();
        if self.buf.len() < cap {
            self.buf.resize(cap, 0);
        }
        let want = want.min(cap);
        loop {
            if self.at_start && (self.filled >= BOM.len() || self.eof) {
                self.at_start = false;
                if self.buf[..self.filled].starts_with(BOM) {
                    self.buf.copy_within(BOM.len()..self.filled, 0);
                    self.filled -= BOM.len();
                }
            }
            if self.eof || (self.filled >= want && !self.at_start) {
                return Ok(());
            }
            match self.inner.read(&mut self.buf[self.filled..cap]) {
                Ok(0) => self.eof = true,
                Ok(n) => {
                    self.filled += n;
                    self.bytes_read += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads until a newline is buffered, the buffer is full, or the stream ends.
    fn fill_line(&mut self) -> io::Result<()> {
        let cap = self.capacity();
        let mut searched = 0;
        while memchr(b'\n', &self.buf[searched..self.filled]).is_none()
            && !self.eof
            && self.filled < cap
        {
            searched = self.filled;
            self.fill_to(self.filled + 1)?;
        }
        Ok(())
    }

    /// Removes the first `n` buffered bytes.
    fn consume(&mut self, n: usize) -> Vec<u8> {
        let out = self.buf[..n].to_vec();
        self.buf.copy_within(n..self.filled, 0);
        self.filled -= n;
        out
    }

    /// Discards bytes up to and including the next newline, reading as needed.
    /// Returns how many bytes were discarded.
    fn skip_line(&mut self) -> io::Result<usize> {
        let mut skipped = 0;
        loop {
            if let Some(i) = memchr(b'\n', &self.buf[..self.filled]) {
                self.consume(i + 1);
                return Ok(skipped + i);
            }
            skipped += self.filled;
            self.filled = 0;
            if self.eof {
                return Ok(skipped);
            }
            self.fill_to(self.block_size)?;
        }
    }

    /// The next block, or `None` at end of stream.
    pub fn next_block(&mut self) -> io::Result<Option<Block>> {
        self.fill_to(self.block_size)?;
        if self.filled == 0 {
            return Ok(None);
        }
        let window = self.filled.min(self.block_size);
        if memchr(b'\n', &self.buf[..window]).is_none() {
            self.fill_line()?;
        }
        // Cut after the last newline within the first block_size bytes, or, when a
        // single line is longer than a block, after the first newline at all.
        let cut = match memrchr(b'\n', &self.buf[..window]) {
            Some(i) => Some(i + 1),
            None => memchr(b'\n', &self.buf[..self.filled]).map(|i| i + 1),
        };
        match cut {
            Some(end) if end - 1 <= self.max_line || end <= window => {
                let bytes = self.consume(end);
                let first_line = self.next_line;
                self.next_line += count_newlines(&bytes);
                Ok(Some(Block::Lines { first_line, bytes }))
            }
            None if self.eof && self.filled <= self.max_line => {
                let n = self.filled;
                let bytes = self.consume(n);
                let first_line = self.next_line;
                self.next_line += count_newlines(&bytes);
                Ok(Some(Block::Lines { first_line, bytes }))
            }
            _ => {
                // The first line is longer than max_line: keep its prefix only.
                let line = self.next_line;
                self.next_line += 1;
                let prefix_len = self.max_line.min(self.filled);
                let prefix = self.buf[..prefix_len].to_vec();
                let len = self.skip_line()?;
                Ok(Some(Block::Oversized { line, prefix, len }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(input: &[u8], max: usize) -> Vec<(u64, String, Option<usize>)> {
        Lines::new(input, 1, max)
            .map(|l| {
                (
                    l.number,
                    String::from_utf8_lossy(l.bytes).into_owned(),
                    l.too_long,
                )
            })
            .collect()
    }

    #[test]
    fn frames_lf_crlf_blank_and_unterminated_lines() {
        let got = frame(b"a\r\nb\n\n\r\nc", 100);
        assert_eq!(
            got,
            vec![
                (1, "a".into(), None),
                (2, "b".into(), None),
                (5, "c".into(), None)
            ]
        );
    }

    #[test]
    fn empty_input_has_no_lines() {
        assert!(frame(b"", 10).is_empty());
        assert!(frame(b"\n\n", 10).is_empty());
    }

    #[test]
    fn long_line_is_cut_and_flagged() {
        let got = frame(b"abcdef\nxy\n", 3);
        assert_eq!(
            got,
            vec![(1, "abc".into(), Some(6)), (2, "xy".into(), None)]
        );
    }

    fn read_all(input: &[u8], block: usize, max: usize) -> Vec<Block> {
        let mut r = BlockReader::new(input, block, max);
        let mut out = Vec::new();
        while let Some(b) = r.next_block().unwrap() {
            out.push(b);
        }
        out
    }

    /// Reassembles the lines the reader produced, to compare with a naive split.
    fn lines_of(blocks: &[Block], max: usize) -> Vec<(u64, Vec<u8>)> {
        let mut out = Vec::new();
        for b in blocks {
            match b {
                Block::Lines { first_line, bytes } => {
                    for l in Lines::new(bytes, *first_line, usize::MAX) {
                        assert!(l.bytes.len() <= max + 1 || l.too_long.is_none());
                        out.push((l.number, l.bytes.to_vec()));
                    }
                }
                Block::Oversized { line, prefix, .. } => out.push((*line, prefix.clone())),
            }
        }
        out
    }

    #[test]
    fn block_reader_strips_bom_and_numbers_lines_across_blocks() {
        let mut input = BOM.to_vec();
        input.extend_from_slice(b"one\ntwo\nthree\nfour");
        let blocks = read_all(&input, 5, 100);
        let got = lines_of(&blocks, 100);
        let want: Vec<(u64, Vec<u8>)> = ["one", "two", "three", "four"]
            .iter()
            .enumerate()
            .map(|(i, s)| (i as u64 + 1, s.as_bytes().to_vec()))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn block_reader_reports_oversized_line_without_buffering_it() {
        let mut input = b"short\n".to_vec();
        input.extend(std::iter::repeat_n(b'x', 10_000));
        input.extend_from_slice(b"\nafter\n");
        let mut r = BlockReader::new(&input[..], 16, 32);
        let mut blocks = Vec::new();
        while let Some(b) = r.next_block().unwrap() {
            assert!(r.buf.len() <= 16 + 32 + 1, "buffer grew to {}", r.buf.len());
            blocks.push(b);
        }
        assert!(blocks.contains(&Block::Oversized {
            line: 2,
            prefix: vec![b'x'; 32],
            len: 10_000
        }));
        let got = lines_of(&blocks, 32);
        assert_eq!(got.last().unwrap(), &(3, b"after".to_vec()));
    }

    #[test]
    fn block_reader_matches_naive_split_for_many_block_sizes() {
        let text = b"{\"a\":1}\n\nxx\r\n{\"long\":\"................\"}\nz";
        let naive: Vec<(u64, Vec<u8>)> = text
            .split(|&b| b == b'\n')
            .enumerate()
            .map(|(i, l)| (i as u64 + 1, l.strip_suffix(b"\r").unwrap_or(l).to_vec()))
            .filter(|(_, l)| !l.is_empty())
            .collect();
        for block in 1..50 {
            let got = lines_of(&read_all(text, block, 64), 64);
            assert_eq!(got, naive, "block size {block}");
        }
    }
}
