//! The one place a hit of the code index becomes a wire hit, and the wire's
//! search mode the index's (feature `index`): the host answers searches
//! with these, and the client's own searches return the same shape.

use vembed_index::{Hit, Mode};

use crate::{Rank, RankedSearchHit, SearchHit, SearchMode};

impl From<Hit> for RankedSearchHit {
    fn from(h: Hit) -> RankedSearchHit {
        let rank = |r: Option<(u32, f32)>| r.map(|(rank, score)| Rank { rank, score });
        let (semantic, lexical) = (rank(h.semantic), rank(h.lexical));
        RankedSearchHit { hit: SearchHit::from(h), semantic, lexical }
    }
}

/// The snippet and the mode's score, without the rankings.
impl From<Hit> for SearchHit {
    fn from(h: Hit) -> SearchHit {
        let s = h.snippet;
        SearchHit {
            path: s.path,
            start_line: s.start_line,
            end_line: s.end_line,
            symbol: s.symbol,
            score: h.score,
            text: s.text,
        }
    }
}

impl From<SearchMode> for Mode {
    fn from(mode: SearchMode) -> Mode {
        match mode {
            SearchMode::Semantic => Mode::Semantic,
            SearchMode::Lexical => Mode::Lexical,
            SearchMode::Hybrid => Mode::Hybrid,
        }
    }
}
