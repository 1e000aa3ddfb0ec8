//! Tokenizers built from the GGUF vocabulary: GPT-2-style byte-level BPE (`tokenizer.ggml.model =
//! gpt2`: Llama 3, Qwen2/3, SmolLM) and SentencePiece-style (`llama`: Llama 2 and others), special
//! tokens, and the BOS/EOS rules from the metadata.

use std::collections::HashMap;

use aho_corasick::{AhoCorasick, MatchKind};
use regex::Regex;

use crate::gguf::{GgufError, GgufFile, MetaValue};

/// Errors from building or using a tokenizer.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// A metadata key is missing or has the wrong type.
    #[error("reading the tokenizer from GGUF metadata: {0}")]
    Metadata(#[from] GgufError),
    /// The vocabulary model is not one egpu implements.
    #[error(
        "tokenizer.ggml.model is {0:?}: egpu implements \"gpt2\" (byte-level BPE) and \"llama\" \
         (SentencePiece)"
    )]
    UnsupportedModel(String),
    /// The pre-tokenizer named in the metadata is unknown.
    #[error(
        "tokenizer.ggml.pre is {0:?}: egpu knows default, gpt2, llama3/llama-bpe, qwen2, smollm and \
         their aliases; add its split rule to tokenizer.rs"
    )]
    UnsupportedPreTokenizer(String),
    /// The vocabulary metadata is inconsistent.
    #[error("tokenizer vocabulary: {0}")]
    BadVocab(String),
    /// Text could not be encoded because a piece has no token and there is no fallback.
    #[error("cannot encode {0:?}: no token for it, no byte tokens and no unknown token")]
    Unencodable(String),
}

/// `tokenizer.ggml.token_type` values (llama.cpp's `llama_token_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenType {
    /// Ordinary text piece.
    Normal,
    /// The unknown token.
    Unknown,
    /// Control token (BOS, EOS, chat markers): never produced from text unless parsed as special.
    Control,
    /// User-defined token, matched verbatim in text.
    UserDefined,
    /// Unused slot.
    Unused,
    /// SentencePiece byte-fallback token `<0xXX>`.
    Byte,
}

impl TokenType {
    fn from_id(id: i64) -> Self {
        match id {
            2 => Self::Unknown,
            3 => Self::Control,
            4 => Self::UserDefined,
            5 => Self::Unused,
            6 => Self::Byte,
            _ => Self::Normal,
        }
    }
}

/// How text is cut into pieces before byte-level BPE (`tokenizer.ggml.pre`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreTokenizer {
    /// GPT-2's split rule.
    Gpt2,
    /// Llama 3's rule (numbers in groups of up to three, newlines kept together).
    Llama3,
    /// Qwen2's rule (Llama 3's with single digits).
    Qwen2,
    /// SmolLM/StarCoder: every digit alone, then GPT-2's rule.
    SmolLm,
}

impl PreTokenizer {
    /// The split rule for a `tokenizer.ggml.pre` value.
    pub fn from_name(name: &str) -> Result<Self, TokenizerError> {
        Ok(match name {
            "default" | "gpt2" | "gpt-2" | "olmo" | "jais" | "phi-2" | "poro-chat" | "viking" => {
                Self::Gpt2
            }
            "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "pixtral" | "tekken" | "dbrx"
            | "smaug-bpe" => Self::Llama3,
            "qwen2" | "qwen35" | "deepseek-r1-qwen" | "megrez" | "stablelm2" | "hunyuan" => {
                Self::Qwen2
            }
            "smollm" | "starcoder" | "refact" | "codeshell" | "command-r" | "exaone"
            | "minerva-7b" => Self::SmolLm,
            other => return Err(TokenizerError::UnsupportedPreTokenizer(other.into())),
        })
    }

    /// Whether the rule has the `\s*[\r\n]+` alternative (Llama 3 family).
    fn has_newline_rule(self) -> bool {
        matches!(self, Self::Llama3 | Self::Qwen2)
    }

    /// The main split regex, with `\s+(?!\S)` removed: the `regex` crate has no look-ahead, so
    /// [`split_pieces`] applies that rule by hand.
    fn pattern(self) -> &'static str {
        match self {
            Self::Gpt2 | Self::SmolLm => {
                r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+"
            }
            Self::Llama3 => {
                r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+"
            }
            Self::Qwen2 => {
                r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+"
            }
        }
    }
}

/// Cuts `text[start..end]` into pre-tokenizer pieces and appends their byte ranges (relative to
/// `text`) to `out`. Matching runs on the sub-slice, so look-around never sees past `end`.
fn split_pieces(
    re: &Regex,
    newline_rule: bool,
    text: &str,
    start: usize,
    end: usize,
    out: &mut Vec<(usize, usize)>,
) {
    let text = &text[start..end];
    let mut pos = 0;
    while pos < text.len() {
        let Some(m) = re.find_at(text, pos) else {
            out.push((start + pos, start + text.len()));
            return;
        };
        if m.start() > pos {
            out.push((start + pos, start + m.start()));
        }
        let mut piece_end = m.end();
        let piece = m.as_str();
        // Emulate `\s+(?!\S)|\s+`: a whitespace run followed by a non-space gives its last
        // character to the next piece. With the Llama 3 rules, runs holding a newline come from
        // `\s*[\r\n]+`, which has no look-ahead, so they are left alone.
        let all_space = piece.chars().all(char::is_whitespace);
        if all_space && !(newline_rule && piece.contains(['\r', '\n'])) && piece_end < text.len() {
            let last = piece.chars().next_back().map_or(0, char::len_utf8);
            if piece.len() > last {
                piece_end -= last;
            }
        }
        out.push((start + m.start(), start + piece_end));
        pos = piece_end;
    }
}

/// GPT-2's reversible map from bytes to printable characters.
fn byte_to_char_table() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut next = 256u32;
    for b in 0..=255u8 {
        let printable = (b'!'..=b'~').contains(&b) || (0xa1..=0xac).contains(&b) || b >= 0xae;
        table[b as usize] = if printable {
            char::from(b)
        } else {
            let c = char::from_u32(next).unwrap_or('\0');
            next += 1;
            c
        };
    }
    table
}

enum Model {
    Bpe {
        pre: PreTokenizer,
        split: Regex,
        digits: Option<Regex>,
        /// (left, right) → (rank, merged id)
        merges: HashMap<(u32, u32), (u32, u32)>,
        byte_to_char: Box<[char; 256]>,
        char_to_byte: HashMap<char, u8>,
        /// Token id of each byte's single-character token.
        byte_token: [Option<u32>; 256],
    },
    Spm {
        scores: Vec<f32>,
        byte_token: [Option<u32>; 256],
        add_space_prefix: bool,
    },
}

/// A tokenizer built from a GGUF file's `tokenizer.*` metadata.
pub struct Tokenizer {
    model: Model,
    tokens: Vec<String>,
    types: Vec<TokenType>,
    token_to_id: HashMap<String, u32>,
    specials: Option<(AhoCorasick, Vec<u32>)>,
    /// Beginning-of-sequence token.
    pub bos: Option<u32>,
    /// End-of-sequence token.
    pub eos: Option<u32>,
    /// End-of-turn token (chat models), if the metadata names one.
    pub eot: Option<u32>,
    /// Unknown token.
    pub unk: Option<u32>,
    /// Whether [`Tokenizer::encode`] with `add_special` puts BOS first.
    pub add_bos: bool,
    /// Whether [`Tokenizer::encode`] with `add_special` puts EOS last.
    pub add_eos: bool,
    /// `tokenizer.chat_template`, if present.
    pub chat_template: Option<String>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("kind", &self.kind_name())
            .field("vocab", &self.tokens.len())
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .finish()
    }
}

fn optional_id(file: &GgufFile, key: &str, vocab: usize) -> Result<Option<u32>, TokenizerError> {
    match file.get(key) {
        None => Ok(None),
        Some(v) => {
            let id = v
                .as_u64()
                .ok_or_else(|| TokenizerError::BadVocab(format!("{key} is {v}, not a token id")))?;
            // Some converters write -1 (as u32::MAX) for "none".
            if id == u64::from(u32::MAX) {
                return Ok(None);
            }
            if id as usize >= vocab {
                return Err(TokenizerError::BadVocab(format!(
                    "{key} = {id} but the vocabulary has {vocab} tokens"
                )));
            }
            Ok(Some(id as u32))
        }
    }
}

/// A pair of adjacent SentencePiece symbols whose concatenation is a token: ordered by score,
/// then leftmost first.
struct SpmCandidate {
    score: f32,
    left: usize,
    right: usize,
    /// End of the right symbol when the pair was found (detects stale entries).
    end: usize,
}

impl PartialEq for SpmCandidate {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == std::cmp::Ordering::Equal
    }
}

impl Eq for SpmCandidate {}

impl PartialOrd for SpmCandidate {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for SpmCandidate {
    /// Max-heap order: higher score first, then the smaller (leftmost) position.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.score.total_cmp(&other.score).then(other.left.cmp(&self.left))
    }
}

impl Tokenizer {
    /// Builds the tokenizer described by `file`'s metadata.
    pub fn from_gguf(file: &GgufFile) -> Result<Self, TokenizerError> {
        let model_name = file.get_str("tokenizer.ggml.model")?;
        let tokens: Vec<String> = file
            .get_array("tokenizer.ggml.tokens")?
            .iter()
            .enumerate()
            .map(|(i, v)| {
                v.as_str().map(str::to_owned).ok_or_else(|| {
                    TokenizerError::BadVocab(format!(
                        "token {i} is {}, not a string",
                        v.type_name()
                    ))
                })
            })
            .collect::<Result<_, _>>()?;
        let n = tokens.len();
        if n == 0 || n > u32::MAX as usize {
            return Err(TokenizerError::BadVocab(format!("{n} tokens")));
        }
        let types: Vec<TokenType> = match file.get("tokenizer.ggml.token_type") {
            Some(v) => {
                let arr = v.as_array().ok_or_else(|| {
                    TokenizerError::BadVocab("tokenizer.ggml.token_type is not an array".into())
                })?;
                if arr.len() != n {
                    return Err(TokenizerError::BadVocab(format!(
                        "{} token types for {n} tokens",
                        arr.len()
                    )));
                }
                arr.iter().map(|t| TokenType::from_id(t.as_i64().unwrap_or(1))).collect()
            }
            None => vec![TokenType::Normal; n],
        };
        let mut token_to_id = HashMap::with_capacity(n);
        for (i, t) in tokens.iter().enumerate() {
            // Later duplicates lose, as in llama.cpp.
            token_to_id.entry(t.clone()).or_insert(i as u32);
        }

        let (model, default_add_bos) = match model_name {
            "gpt2" => {
                let pre_name =
                    file.get("tokenizer.ggml.pre").and_then(MetaValue::as_str).unwrap_or("default");
                let pre = PreTokenizer::from_name(pre_name)?;
                let split = Regex::new(pre.pattern())
                    .map_err(|e| TokenizerError::BadVocab(format!("pre-tokenizer regex: {e}")))?;
                let digits = (pre == PreTokenizer::SmolLm)
                    .then(|| {
                        Regex::new(r"\p{N}").map_err(|e| TokenizerError::BadVocab(e.to_string()))
                    })
                    .transpose()?;
                let merges_meta = file.get_array("tokenizer.ggml.merges")?;
                let mut merges = HashMap::with_capacity(merges_meta.len());
                for (rank, m) in merges_meta.iter().enumerate() {
                    let m = m.as_str().ok_or_else(|| {
                        TokenizerError::BadVocab(format!("merge {rank} is not a string"))
                    })?;
                    let (a, b) = m.split_once(' ').ok_or_else(|| {
                        TokenizerError::BadVocab(format!("merge {rank} {m:?} has no space"))
                    })?;
                    let (Some(&ia), Some(&ib), Some(&im)) = (
                        token_to_id.get(a),
                        token_to_id.get(b),
                        token_to_id.get(&format!("{a}{b}")),
                    ) else {
                        // llama.cpp tolerates merges whose parts are missing; they can never apply.
                        continue;
                    };
                    merges.entry((ia, ib)).or_insert((rank as u32, im));
                }
                let byte_to_char = byte_to_char_table();
                let char_to_byte =
                    byte_to_char.iter().enumerate().map(|(b, &c)| (c, b as u8)).collect();
                let mut byte_token = [None; 256];
                for (b, slot) in byte_token.iter_mut().enumerate() {
                    *slot = token_to_id.get(&byte_to_char[b].to_string()).copied();
                }
                (
                    Model::Bpe {
                        pre,
                        split,
                        digits,
                        merges,
                        byte_to_char: Box::new(byte_to_char),
                        char_to_byte,
                        byte_token,
                    },
                    false,
                )
            }
            "llama" => {
                let scores: Vec<f32> = match file.get("tokenizer.ggml.scores") {
                    Some(v) => v
                        .as_array()
                        .ok_or_else(|| {
                            TokenizerError::BadVocab("tokenizer.ggml.scores is not an array".into())
                        })?
                        .iter()
                        .map(|s| s.as_f64().unwrap_or(0.0) as f32)
                        .collect(),
                    None => vec![0.0; n],
                };
                if scores.len() != n {
                    return Err(TokenizerError::BadVocab(format!(
                        "{} scores for {n} tokens",
                        scores.len()
                    )));
                }
                let mut byte_token = [None; 256];
                for (b, slot) in byte_token.iter_mut().enumerate() {
                    *slot = token_to_id.get(&format!("<0x{b:02X}>")).copied();
                }
                let add_space_prefix =
                    file.get_bool_opt("tokenizer.ggml.add_space_prefix")?.unwrap_or(true);
                (Model::Spm { scores, byte_token, add_space_prefix }, true)
            }
            other => return Err(TokenizerError::UnsupportedModel(other.into())),
        };

        let special_ids: Vec<u32> = (0..n as u32)
            .filter(|&i| {
                matches!(types[i as usize], TokenType::Control | TokenType::UserDefined)
                    && !tokens[i as usize].is_empty()
            })
            .collect();
        let specials = if special_ids.is_empty() {
            None
        } else {
            let ac = AhoCorasick::builder()
                .match_kind(MatchKind::LeftmostLongest)
                .build(special_ids.iter().map(|&i| tokens[i as usize].as_str()))
                .map_err(|e| TokenizerError::BadVocab(format!("special-token matcher: {e}")))?;
            Some((ac, special_ids))
        };

        let eot = optional_id(file, "tokenizer.ggml.eot_token_id", n)?.or_else(|| {
            ["<|eot_id|>", "<|im_end|>", "<end_of_turn>"]
                .iter()
                .find_map(|t| token_to_id.get(*t).copied())
        });
        Ok(Self {
            bos: optional_id(file, "tokenizer.ggml.bos_token_id", n)?,
            eos: optional_id(file, "tokenizer.ggml.eos_token_id", n)?,
            eot,
            unk: optional_id(file, "tokenizer.ggml.unknown_token_id", n)?,
            add_bos: file.get_bool_opt("tokenizer.ggml.add_bos_token")?.unwrap_or(default_add_bos),
            add_eos: file.get_bool_opt("tokenizer.ggml.add_eos_token")?.unwrap_or(false),
            chat_template: file
                .get("tokenizer.chat_template")
                .and_then(MetaValue::as_str)
                .map(str::to_owned),
            model,
            tokens,
            types,
            token_to_id,
            specials,
        })
    }

    fn kind_name(&self) -> &'static str {
        match self.model {
            Model::Bpe { .. } => "byte-level BPE",
            Model::Spm { .. } => "SentencePiece",
        }
    }

    /// Number of tokens in the vocabulary.
    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    /// The vocabulary text of a token.
    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(String::as_str)
    }

    /// The id of a token text.
    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.token_to_id.get(text).copied()
    }

    /// Whether generation should stop at this token (EOS, end of turn, or any control token
    /// that ends a sequence).
    pub fn is_end_of_generation(&self, id: u32) -> bool {
        Some(id) == self.eos || Some(id) == self.eot
    }

    /// Whether `id` is a control token (not text).
    pub fn is_control(&self, id: u32) -> bool {
        self.types.get(id as usize) == Some(&TokenType::Control)
    }

    /// Encodes text. With `add_special`, BOS/EOS are added as the metadata says; with
    /// `parse_special`, special-token texts in `text` (e.g. `<|im_start|>`) become their ids.
    pub fn encode(
        &self,
        text: &str,
        add_special: bool,
        parse_special: bool,
    ) -> Result<Vec<u32>, TokenizerError> {
        let mut out = Vec::new();
        if add_special && self.add_bos {
            out.extend(self.bos);
        }
        let mut prev_special = true;
        let mut pos = 0;
        if let (true, Some((ac, ids))) = (parse_special, &self.specials) {
            for m in ac.find_iter(text) {
                if m.start() > pos {
                    self.encode_text(&text[pos..m.start()], prev_special, &mut out)?;
                }
                out.push(ids[m.pattern().as_usize()]);
                prev_special = true;
                pos = m.end();
            }
        }
        if pos < text.len() {
            self.encode_text(&text[pos..], prev_special, &mut out)?;
        }
        if add_special && self.add_eos {
            out.extend(self.eos);
        }
        Ok(out)
    }

    fn encode_text(
        &self,
        text: &str,
        after_special: bool,
        out: &mut Vec<u32>,
    ) -> Result<(), TokenizerError> {
        match &self.model {
            Model::Bpe { pre, split, digits, merges, byte_token, byte_to_char, .. } => {
                let mut pieces = Vec::new();
                let newline_rule = pre.has_newline_rule();
                match digits {
                    Some(d) => {
                        // Each digit is its own piece; the runs between digits go through `split`.
                        let mut pos = 0;
                        for m in d.find_iter(text) {
                            split_pieces(split, newline_rule, text, pos, m.start(), &mut pieces);
                            pieces.push((m.start(), m.end()));
                            pos = m.end();
                        }
                        split_pieces(split, newline_rule, text, pos, text.len(), &mut pieces);
                    }
                    None => split_pieces(split, newline_rule, text, 0, text.len(), &mut pieces),
                }
                for (s, e) in pieces {
                    self.bpe_piece(&text[s..e], merges, byte_token, byte_to_char, out)?;
                }
                Ok(())
            }
            Model::Spm { scores, byte_token, add_space_prefix } => {
                let mut s = String::with_capacity(text.len() + 3);
                if *add_space_prefix && after_special {
                    s.push('\u{2581}');
                }
                for c in text.chars() {
                    s.push(if c == ' ' { '\u{2581}' } else { c });
                }
                self.spm_encode(&s, scores, byte_token, out)
            }
        }
    }

    fn bpe_piece(
        &self,
        piece: &str,
        merges: &HashMap<(u32, u32), (u32, u32)>,
        byte_token: &[Option<u32>; 256],
        byte_to_char: &[char; 256],
        out: &mut Vec<u32>,
    ) -> Result<(), TokenizerError> {
        // Whole-piece shortcut: most words are single tokens.
        let mapped: String = piece.bytes().map(|b| byte_to_char[b as usize]).collect();
        if let Some(&id) = self.token_to_id.get(&mapped) {
            if self.types[id as usize] == TokenType::Normal {
                out.push(id);
                return Ok(());
            }
        }
        let mut syms: Vec<u32> = Vec::with_capacity(piece.len());
        for b in piece.bytes() {
            match byte_token[b as usize].or(self.unk) {
                Some(id) => syms.push(id),
                None => return Err(TokenizerError::Unencodable(piece.into())),
            }
        }
        loop {
            let best = syms
                .windows(2)
                .enumerate()
                .filter_map(|(i, w)| merges.get(&(w[0], w[1])).map(|&(rank, id)| (rank, i, id)))
                .min();
            let Some((_, i, id)) = best else { break };
            syms[i] = id;
            syms.remove(i + 1);
        }
        out.extend_from_slice(&syms);
        Ok(())
    }

    fn spm_encode(
        &self,
        text: &str,
        scores: &[f32],
        byte_token: &[Option<u32>; 256],
        out: &mut Vec<u32>,
    ) -> Result<(), TokenizerError> {
        // Symbols are byte ranges of `text`, starting as single characters; repeatedly merge the
        // adjacent pair whose concatenation is a vocabulary token with the highest score
        // (leftmost on ties), as SentencePiece's BPE does. Symbols form a linked list and
        // candidate pairs wait in a heap, so a long prompt costs O(n log n), not O(n²); a
        // candidate is stale once either side has merged since (its span no longer matches).
        let mut spans: Vec<(usize, usize)> =
            text.char_indices().map(|(i, c)| (i, i + c.len_utf8())).collect();
        let n = spans.len();
        let mut next: Vec<usize> = (1..=n).collect(); // n = end of list
        let mut prev: Vec<Option<usize>> = (0..n).map(|i| i.checked_sub(1)).collect();
        let mut alive = vec![true; n];
        let mut heap = std::collections::BinaryHeap::new();
        let candidate = |spans: &[(usize, usize)], left: usize, right: usize| {
            let (start, end) = (spans[left].0, spans[right].1);
            self.token_to_id.get(&text[start..end]).map(|&id| SpmCandidate {
                score: scores[id as usize],
                left,
                right,
                end,
            })
        };
        for i in 1..n {
            heap.extend(candidate(&spans, i - 1, i));
        }
        while let Some(SpmCandidate { left, right, end, .. }) = heap.pop() {
            if !alive[left] || !alive[right] || next[left] != right || spans[right].1 != end {
                continue;
            }
            spans[left].1 = end;
            alive[right] = false;
            next[left] = next[right];
            if next[left] < n {
                prev[next[left]] = Some(left);
            }
            if let Some(p) = prev[left] {
                heap.extend(candidate(&spans, p, left));
            }
            if next[left] < n {
                heap.extend(candidate(&spans, left, next[left]));
            }
        }
        let syms: Vec<(usize, usize)> = (0..n).filter(|&i| alive[i]).map(|i| spans[i]).collect();
        for (s, e) in syms {
            let piece = &text[s..e];
            if let Some(&id) = self.token_to_id.get(piece) {
                out.push(id);
                continue;
            }
            for b in piece.bytes() {
                match byte_token[b as usize].or(self.unk) {
                    Some(id) => out.push(id),
                    None => return Err(TokenizerError::Unencodable(piece.into())),
                }
            }
        }
        Ok(())
    }

    /// The bytes a token stands for when decoded (control tokens give their text only when
    /// `include_control` is set).
    pub fn token_bytes(&self, id: u32, include_control: bool) -> Vec<u8> {
        let Some(text) = self.tokens.get(id as usize) else { return Vec::new() };
        let ty = self.types[id as usize];
        if matches!(ty, TokenType::Control | TokenType::Unknown | TokenType::Unused) {
            return if include_control { text.as_bytes().to_vec() } else { Vec::new() };
        }
        match &self.model {
            Model::Bpe { char_to_byte, .. } => {
                if ty == TokenType::UserDefined {
                    return text.as_bytes().to_vec();
                }
                let mut out = Vec::with_capacity(text.len());
                for c in text.chars() {
                    match char_to_byte.get(&c) {
                        Some(&b) => out.push(b),
                        None => {
                            let mut buf = [0u8; 4];
                            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                        }
                    }
                }
                out
            }
            Model::Spm { .. } => {
                if ty == TokenType::Byte {
                    if let Some(b) = text
                        .strip_prefix("<0x")
                        .and_then(|h| h.strip_suffix('>'))
                        .and_then(|h| u8::from_str_radix(h, 16).ok())
                    {
                        return vec![b];
                    }
                }
                text.replace('\u{2581}', " ").into_bytes()
            }
        }
    }

    /// Decodes ids to text (invalid UTF-8 is replaced). Control tokens are dropped unless
    /// `include_control` is set.
    pub fn decode(&self, ids: &[u32], include_control: bool) -> String {
        let mut bytes = Vec::new();
        for &id in ids {
            bytes.extend(self.token_bytes(id, include_control));
        }
        if let Model::Spm { add_space_prefix: true, .. } = self.model {
            if bytes.first() == Some(&b' ') {
                bytes.remove(0);
            }
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// A decoder that turns a token stream into text pieces without splitting UTF-8 characters.
    pub fn stream_decoder(&self) -> StreamDecoder<'_> {
        StreamDecoder { tokenizer: self, pending: Vec::new(), first: true }
    }
}

/// Turns generated tokens into text as they arrive, holding back bytes of an unfinished UTF-8
/// character.
pub struct StreamDecoder<'a> {
    tokenizer: &'a Tokenizer,
    pending: Vec<u8>,
    first: bool,
}

impl StreamDecoder<'_> {
    /// Adds a token and returns the text that is complete so far.
    pub fn push(&mut self, id: u32) -> String {
        let mut bytes = self.tokenizer.token_bytes(id, false);
        if self.first && !bytes.is_empty() {
            self.first = false;
            if matches!(self.tokenizer.model, Model::Spm { add_space_prefix: true, .. })
                && bytes[0] == b' '
            {
                bytes.remove(0);
            }
        }
        self.pending.extend(bytes);
        let valid = match std::str::from_utf8(&self.pending) {
            Ok(_) => self.pending.len(),
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            // An invalid sequence (not just an unfinished one) is flushed lossily.
            Err(_) => self.pending.len(),
        };
        let rest = self.pending.split_off(valid);
        let out = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending = rest;
        out
    }

    /// Flushes whatever is left.
    pub fn finish(&mut self) -> String {
        let out = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(pre: PreTokenizer, text: &str) -> Vec<String> {
        let re = Regex::new(pre.pattern()).unwrap();
        let mut out = Vec::new();
        split_pieces(&re, pre.has_newline_rule(), text, 0, text.len(), &mut out);
        out.iter().map(|&(s, e)| text[s..e].to_string()).collect()
    }

    #[test]
    fn gpt2_split_gives_trailing_space_to_the_next_word() {
        assert_eq!(pieces(PreTokenizer::Gpt2, "a   b"), ["a", "  ", " b"]);
        assert_eq!(pieces(PreTokenizer::Gpt2, "a \n b"), ["a", " \n", " b"]);
        assert_eq!(pieces(PreTokenizer::Gpt2, "it's 42!  "), ["it", "'s", " 42", "!", "  "]);
        assert_eq!(
            pieces(PreTokenizer::Llama3, "x\n\n  y 12345"),
            ["x", "\n\n", " ", " y", " ", "123", "45"]
        );
    }

    #[test]
    fn byte_table_is_a_bijection() {
        let t = byte_to_char_table();
        let set: std::collections::HashSet<char> = t.iter().copied().collect();
        assert_eq!(set.len(), 256);
        assert_eq!(t[b'A' as usize], 'A');
        assert_eq!(t[b' ' as usize], '\u{120}');
        assert_eq!(t[b'\n' as usize], '\u{10a}');
    }
}
