//! A small reader for the amdgpu C headers: enough preprocessing, tokenising and layout
//! computation to turn `#define`s, enums and packed/natural structs into numbers.
//!
//! It is not a C compiler. It understands what these particular headers use (fixed-width
//! integer types, nested and anonymous structs/unions, bitfields, flexible arrays, array sizes
//! written as constant expressions with `sizeof`, `#pragma pack(1)` and `__packed`) and fails
//! loudly on anything else, so a header change cannot silently produce wrong tables.

use std::collections::BTreeMap;
use std::fmt;
use std::rc::Rc;

/// A generator failure with the header and construct it concerns.
#[derive(Debug)]
pub struct HeaderError(pub String);

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for HeaderError {}

pub type Result<T> = std::result::Result<T, HeaderError>;

fn err<T>(msg: impl Into<String>) -> Result<T> {
    Err(HeaderError(msg.into()))
}

/// One `#define`, after comment removal and line joining.
#[derive(Clone, Debug)]
pub struct Define {
    pub name: String,
    pub params: Option<Vec<String>>,
    pub body: String,
}

/// A header after preprocessing: its code lines (conditionals resolved) and its defines.
pub struct Header {
    pub path: String,
    /// Code with comments and preprocessor lines removed; `#pragma pack` kept as a marker token.
    pub code: String,
    pub defines: Vec<Define>,
    /// Raw text (comments kept), for generators that key on comments.
    pub raw: String,
}

/// Removes `/* */` and `//` comments, keeping newlines so line structure survives.
fn strip_comments(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'/' && i + 1 < bytes.len() && bytes[i + 1] == b'*' {
            i += 2;
            while i + 1 < bytes.len() && !(bytes[i] == b'*' && bytes[i + 1] == b'/') {
                if bytes[i] == b'\n' {
                    out.push('\n');
                }
                i += 1;
            }
            i += 2;
            out.push(' ');
        } else if bytes[i] == b'/' && i + 1 < bytes.len() && bytes[i + 1] == b'/' {
            while i < bytes.len() && bytes[i] != b'\n' {
                i += 1;
            }
        } else {
            let ch_len = text[i..].chars().next().map_or(1, char::len_utf8);
            out.push_str(&text[i..i + ch_len]);
            i += ch_len;
        }
    }
    out
}

/// Decides a preprocessor condition the way a little-endian x86-64 kernel build would, for
/// the only conditions these headers contain (endianness and include guards).
fn condition_holds(directive: &str, cond: &str) -> bool {
    let upper = cond.to_ascii_uppercase();
    let says_big = upper.contains("BIG_ENDIAN") || upper.contains("BIGENDIAN");
    let says_little = upper.contains("LITTLE_ENDIAN") || upper.contains("LITTLEENDIAN");
    let truth = if says_big {
        false
    } else if says_little {
        true
    } else {
        // Include guards (#ifndef X) and feature tests default to "taken".
        true
    };
    match directive {
        "ifndef" if says_big || says_little => !truth,
        "ifdef" | "ifndef" | "if" | "elif" => truth,
        _ => truth,
    }
}

impl Header {
    /// Preprocesses `raw` (the text of `path`).
    pub fn parse(path: &str, raw: String) -> Result<Header> {
        let stripped = strip_comments(&raw);
        // Join backslash continuations.
        let joined = stripped.replace("\\\r\n", " ").replace("\\\n", " ");
        let mut code = String::new();
        let mut defines = Vec::new();
        // Stack of (this branch active, some branch already taken, parent active).
        let mut stack: Vec<(bool, bool, bool)> = Vec::new();
        let active = |stack: &Vec<(bool, bool, bool)>| stack.iter().all(|s| s.0);
        for line in joined.lines() {
            let trimmed = line.trim_start();
            if let Some(rest) = trimmed.strip_prefix('#') {
                let rest = rest.trim_start();
                let (directive, arg) = match rest.find(|c: char| c.is_whitespace()) {
                    Some(p) => (&rest[..p], rest[p..].trim()),
                    None => (rest, ""),
                };
                match directive {
                    "if" | "ifdef" | "ifndef" => {
                        let parent = active(&stack);
                        let holds = condition_holds(directive, arg);
                        stack.push((holds, holds, parent));
                    }
                    "elif" => {
                        let Some(top) = stack.last_mut() else {
                            return err(format!("{path}: #elif without #if"));
                        };
                        let holds = !top.1 && condition_holds("elif", arg);
                        top.0 = holds;
                        top.1 |= holds;
                    }
                    "else" => {
                        let Some(top) = stack.last_mut() else {
                            return err(format!("{path}: #else without #if"));
                        };
                        top.0 = !top.1;
                        top.1 = true;
                    }
                    "endif" if stack.pop().is_none() => {
                        return err(format!("{path}: #endif without #if"));
                    }
                    "define" if active(&stack) => {
                        if let Some(d) = parse_define(arg) {
                            defines.push(d);
                        }
                    }
                    "pragma" if active(&stack) => {
                        let compact: String = arg.chars().filter(|c| !c.is_whitespace()).collect();
                        if compact == "pack(1)" || compact == "pack(push,1)" {
                            code.push_str(" __pragma_pack_1 ;\n");
                        } else if compact == "pack()" || compact == "pack(pop)" {
                            code.push_str(" __pragma_pack_end ;\n");
                        }
                    }
                    _ => {}
                }
                code.push('\n');
                continue;
            }
            if active(&stack) {
                code.push_str(line);
            }
            code.push('\n');
        }
        Ok(Header { path: path.to_string(), code, defines, raw })
    }

    /// The last definition of `name`, if any.
    pub fn define(&self, name: &str) -> Option<&Define> {
        self.defines.iter().rev().find(|d| d.name == name)
    }

    /// Evaluates the object-like define `name` to a number.
    pub fn define_value(&self, name: &str) -> Result<i128> {
        let Some(d) = self.define(name) else {
            return err(format!("{}: #define {name} not found", self.path));
        };
        let env = self.numeric_defines_env();
        eval_expr(&d.body, &env, &Layouts::default())
            .map_err(|e| HeaderError(format!("{}: #define {name}: {e}", self.path)))
    }

    /// All object-like defines whose body is a constant expression, by name.
    pub fn numeric_defines_env(&self) -> BTreeMap<String, i128> {
        let mut env = BTreeMap::new();
        for d in &self.defines {
            if d.params.is_some() {
                continue;
            }
            if let Ok(v) = eval_expr(&d.body, &env, &Layouts::default()) {
                env.insert(d.name.clone(), v);
            }
        }
        env
    }
}

fn parse_define(arg: &str) -> Option<Define> {
    let name_end =
        arg.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(arg.len());
    let name = arg[..name_end].to_string();
    if name.is_empty() {
        return None;
    }
    let rest = &arg[name_end..];
    if let Some(after) = rest.strip_prefix('(') {
        let close = after.find(')')?;
        let params = after[..close].split(',').map(|p| p.trim().to_string()).collect();
        Some(Define { name, params: Some(params), body: after[close + 1..].trim().to_string() })
    } else {
        Some(Define { name, params: None, body: rest.trim().to_string() })
    }
}

// ---------------------------------------------------------------------------------------------
// Tokens

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tok {
    Ident(String),
    Num(i128),
    Punct(String),
}

pub fn tokenize(src: &str) -> Result<Vec<Tok>> {
    let chars: Vec<char> = src.chars().collect();
    let mut toks = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            toks.push(Tok::Ident(chars[start..i].iter().collect()));
        } else if c.is_ascii_digit() {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric()) {
                i += 1;
            }
            let text: String = chars[start..i].iter().collect();
            toks.push(Tok::Num(parse_number(&text)?));
        } else {
            let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
            if ["<<", ">>", "->", "&&", "||", "==", "!=", "<=", ">="].contains(&two.as_str()) {
                toks.push(Tok::Punct(two));
                i += 2;
            } else {
                toks.push(Tok::Punct(c.to_string()));
                i += 1;
            }
        }
    }
    Ok(toks)
}

/// Parses a C integer literal (hex/decimal/octal with U/L suffixes).
pub fn parse_number(text: &str) -> Result<i128> {
    let t = text.trim_end_matches(['u', 'U', 'l', 'L']);
    let v = if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        i128::from_str_radix(h, 16)
    } else if t.len() > 1 && t.starts_with('0') {
        i128::from_str_radix(&t[1..], 8)
    } else {
        t.parse::<i128>()
    };
    v.map_err(|_| HeaderError(format!("bad integer literal `{text}`")))
}

// ---------------------------------------------------------------------------------------------
// Constant expressions

/// Sizes of aggregates already laid out, for `sizeof(struct x)` in expressions.
#[derive(Default)]
pub struct Layouts {
    pub by_name: BTreeMap<String, Rc<Agg>>,
}

/// Evaluates a C integer constant expression.
pub fn eval_expr(src: &str, env: &BTreeMap<String, i128>, layouts: &Layouts) -> Result<i128> {
    let toks = tokenize(src)?;
    let mut p = ExprParser { toks: &toks, pos: 0, env, layouts };
    let v = p.ternary()?;
    if p.pos != toks.len() {
        return err(format!("trailing tokens in expression `{src}`"));
    }
    Ok(v)
}

struct ExprParser<'a> {
    toks: &'a [Tok],
    pos: usize,
    env: &'a BTreeMap<String, i128>,
    layouts: &'a Layouts,
}

impl ExprParser<'_> {
    fn peek_punct(&self, p: &str) -> bool {
        matches!(self.toks.get(self.pos), Some(Tok::Punct(x)) if x == p)
    }
    fn eat(&mut self, p: &str) -> bool {
        if self.peek_punct(p) {
            self.pos += 1;
            true
        } else {
            false
        }
    }
    fn ternary(&mut self) -> Result<i128> {
        let c = self.binary(0)?;
        if self.eat("?") {
            let a = self.ternary()?;
            if !self.eat(":") {
                return err("expected `:`");
            }
            let b = self.ternary()?;
            return Ok(if c != 0 { a } else { b });
        }
        Ok(c)
    }
    fn binary(&mut self, min_prec: u8) -> Result<i128> {
        let mut lhs = self.unary()?;
        while let Some(Tok::Punct(op)) = self.toks.get(self.pos) {
            let prec = match op.as_str() {
                "||" => 1,
                "&&" => 2,
                "|" => 3,
                "^" => 4,
                "&" => 5,
                "==" | "!=" => 6,
                "<" | ">" | "<=" | ">=" => 7,
                "<<" | ">>" => 8,
                "+" | "-" => 9,
                "*" | "/" | "%" => 10,
                _ => break,
            };
            if prec < min_prec {
                break;
            }
            let op = op.clone();
            self.pos += 1;
            let rhs = self.binary(prec + 1)?;
            lhs = match op.as_str() {
                "||" => i128::from(lhs != 0 || rhs != 0),
                "&&" => i128::from(lhs != 0 && rhs != 0),
                "|" => lhs | rhs,
                "^" => lhs ^ rhs,
                "&" => lhs & rhs,
                "==" => i128::from(lhs == rhs),
                "!=" => i128::from(lhs != rhs),
                "<" => i128::from(lhs < rhs),
                ">" => i128::from(lhs > rhs),
                "<=" => i128::from(lhs <= rhs),
                ">=" => i128::from(lhs >= rhs),
                "<<" => lhs << rhs,
                ">>" => lhs >> rhs,
                "+" => lhs + rhs,
                "-" => lhs - rhs,
                "*" => lhs * rhs,
                "/" | "%" if rhs == 0 => return err("division by zero"),
                "/" => lhs / rhs,
                "%" => lhs % rhs,
                _ => unreachable!("operator list above"),
            };
        }
        Ok(lhs)
    }
    fn unary(&mut self) -> Result<i128> {
        if self.eat("-") {
            return Ok(-self.unary()?);
        }
        if self.eat("+") {
            return self.unary();
        }
        if self.eat("~") {
            return Ok(!self.unary()?);
        }
        if self.eat("!") {
            return Ok(i128::from(self.unary()? == 0));
        }
        if self.eat("(") {
            // A cast such as (uint32_t) is skipped.
            if let Some(Tok::Ident(name)) = self.toks.get(self.pos) {
                if prim_of(name).is_some()
                    && matches!(self.toks.get(self.pos + 1), Some(Tok::Punct(p)) if p == ")")
                {
                    self.pos += 2;
                    return self.unary();
                }
            }
            let v = self.ternary()?;
            if !self.eat(")") {
                return err("expected `)`");
            }
            return Ok(v);
        }
        match self.toks.get(self.pos).cloned() {
            Some(Tok::Num(n)) => {
                self.pos += 1;
                Ok(n)
            }
            Some(Tok::Ident(id)) if id == "sizeof" => {
                self.pos += 1;
                if !self.eat("(") {
                    return err("expected `(` after sizeof");
                }
                let mut words = Vec::new();
                while let Some(Tok::Ident(w)) = self.toks.get(self.pos) {
                    words.push(w.clone());
                    self.pos += 1;
                }
                if !self.eat(")") {
                    return err("expected `)` after sizeof type");
                }
                let name = words.last().cloned().unwrap_or_default();
                if let Some(p) = prim_of(&name) {
                    return Ok(i128::from(p.size()));
                }
                match self.layouts.by_name.get(&name) {
                    Some(a) => Ok(i128::from(a.size)),
                    None => err(format!("sizeof of unknown type `{}`", words.join(" "))),
                }
            }
            Some(Tok::Ident(id)) => {
                self.pos += 1;
                match self.env.get(&id) {
                    Some(v) => Ok(*v),
                    None => err(format!("unknown identifier `{id}`")),
                }
            }
            other => err(format!("unexpected token {other:?}")),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Types and layout

/// A fixed-width integer type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prim {
    U8,
    U16,
    U32,
    U64,
    I8,
    I16,
    I32,
    I64,
}

impl Prim {
    pub fn size(self) -> u64 {
        match self {
            Prim::U8 | Prim::I8 => 1,
            Prim::U16 | Prim::I16 => 2,
            Prim::U32 | Prim::I32 => 4,
            Prim::U64 | Prim::I64 => 8,
        }
    }
    pub fn rust(self) -> &'static str {
        match self {
            Prim::U8 => "u8",
            Prim::U16 => "u16",
            Prim::U32 => "u32",
            Prim::U64 => "u64",
            Prim::I8 => "i8",
            Prim::I16 => "i16",
            Prim::I32 => "i32",
            Prim::I64 => "i64",
        }
    }
}

/// Maps a C type name to its fixed-width equivalent on x86-64.
pub fn prim_of(name: &str) -> Option<Prim> {
    Some(match name {
        "uint8_t" | "u8" | "__u8" | "unsigned char" | "char" | "uchar" => Prim::U8,
        "int8_t" | "s8" | "__s8" => Prim::I8,
        "uint16_t" | "u16" | "__u16" | "__le16" | "ushort" => Prim::U16,
        "int16_t" | "s16" | "__s16" => Prim::I16,
        "uint32_t" | "u32" | "__u32" | "__le32" | "uint" | "unsigned" => Prim::U32,
        "int32_t" | "s32" | "__s32" | "int" => Prim::I32,
        "uint64_t" | "u64" | "__u64" | "__le64" => Prim::U64,
        "int64_t" | "s64" | "__s64" => Prim::I64,
        _ => return None,
    })
}

#[derive(Clone, Debug)]
pub enum Ty {
    Prim(Prim),
    Agg(Rc<Agg>),
}

impl Ty {
    fn size(&self) -> u64 {
        match self {
            Ty::Prim(p) => p.size(),
            Ty::Agg(a) => a.size,
        }
    }
    fn align(&self, packed: bool) -> u64 {
        if packed {
            return 1;
        }
        match self {
            Ty::Prim(p) => p.size(),
            Ty::Agg(a) => a.align,
        }
    }
}

/// A struct or union member, placed.
#[derive(Clone, Debug)]
pub struct Member {
    /// `None` for an anonymous struct/union whose members belong to the parent.
    pub name: Option<String>,
    pub ty: Ty,
    /// Byte offset of the member (for bitfields: of its storage unit).
    pub offset: u64,
    /// `Some(n)` for arrays; `Some(0)` for a flexible array member.
    pub count: Option<u64>,
    /// `(shift within the storage unit, width)` for bitfields.
    pub bits: Option<(u32, u32)>,
}

/// A laid-out struct or union.
#[derive(Clone, Debug)]
pub struct Agg {
    pub is_union: bool,
    pub name: String,
    pub size: u64,
    pub align: u64,
    pub members: Vec<Member>,
}

/// Parses aggregates and enums out of one header on demand, by name.
pub struct TypeReader<'h> {
    header: &'h Header,
    toks: Vec<Tok>,
    env: BTreeMap<String, i128>,
    pub layouts: Layouts,
}

impl<'h> TypeReader<'h> {
    pub fn new(header: &'h Header) -> Result<Self> {
        let toks =
            tokenize(&header.code).map_err(|e| HeaderError(format!("{}: {e}", header.path)))?;
        let env = header.numeric_defines_env();
        let mut reader = TypeReader { header, toks, env, layouts: Layouts::default() };
        // Enumerators are usable in array sizes (e.g. `table_list[TOTAL_TABLES]`); enums whose
        // values are not constant expressions here are simply not added.
        let mut all = reader.env.clone();
        for i in 0..reader.toks.len() {
            if reader.toks[i] != Tok::Ident("enum".into()) {
                continue;
            }
            let open = match (reader.toks.get(i + 1), reader.toks.get(i + 2)) {
                (Some(Tok::Punct(b)), _) if b == "{" => i + 1,
                (Some(Tok::Ident(_)), Some(Tok::Punct(b))) if b == "{" => i + 2,
                _ => continue,
            };
            if let Ok(items) = reader.enum_body(open, &all, "<scan>") {
                all.extend(items);
            }
        }
        reader.env = all;
        Ok(reader)
    }

    fn fail<T>(&self, what: &str) -> Result<T> {
        err(format!("{}: {what}", self.header.path))
    }

    /// Whether a `#pragma pack(1)` is in force at token `pos`.
    fn pack1_at(&self, pos: usize) -> bool {
        let mut on = false;
        for t in &self.toks[..pos] {
            if let Tok::Ident(w) = t {
                if w == "__pragma_pack_1" {
                    on = true;
                } else if w == "__pragma_pack_end" {
                    on = false;
                }
            }
        }
        on
    }

    /// Finds `struct NAME {` / `union NAME {` / `typedef struct NAME {` (or a typedef name
    /// following the closing brace) and returns the token index of the `struct`/`union` keyword.
    fn find_agg(&self, name: &str) -> Option<usize> {
        for i in 0..self.toks.len() {
            if let Tok::Ident(kw) = &self.toks[i] {
                if kw != "struct" && kw != "union" {
                    continue;
                }
                if let (Some(Tok::Ident(n)), Some(Tok::Punct(b))) =
                    (self.toks.get(i + 1), self.toks.get(i + 2))
                {
                    if n == name && b == "{" {
                        return Some(i);
                    }
                }
            }
        }
        // typedef struct { ... } NAME;
        for i in 0..self.toks.len() {
            if self.toks[i] != Tok::Ident("typedef".into()) {
                continue;
            }
            let Some(open) =
                (i..self.toks.len().min(i + 4)).find(|&j| self.toks[j] == Tok::Punct("{".into()))
            else {
                continue;
            };
            let close = self.matching_brace(open)?;
            if let Some(Tok::Ident(n)) = self.toks.get(close + 1) {
                if n == name {
                    return Some(i + 1);
                }
            }
        }
        None
    }

    fn matching_brace(&self, open: usize) -> Option<usize> {
        let mut depth = 0;
        for j in open..self.toks.len() {
            match &self.toks[j] {
                Tok::Punct(p) if p == "{" => depth += 1,
                Tok::Punct(p) if p == "}" => {
                    depth -= 1;
                    if depth == 0 {
                        return Some(j);
                    }
                }
                _ => {}
            }
        }
        None
    }

    /// Lays out the named struct/union (and, recursively, what it contains).
    pub fn agg(&mut self, name: &str) -> Result<Rc<Agg>> {
        if let Some(a) = self.layouts.by_name.get(name) {
            return Ok(a.clone());
        }
        let Some(start) = self.find_agg(name) else {
            return self.fail(&format!("struct/union `{name}` not found"));
        };
        let packed = self.pack1_at(start);
        let (agg, _) = self.parse_agg_at(start, name.to_string(), packed)?;
        let agg = Rc::new(agg);
        self.layouts.by_name.insert(name.to_string(), agg.clone());
        Ok(agg)
    }

    /// Parses `struct [tag] { ... } [__packed]` starting at the keyword; returns the
    /// aggregate and the index after its closing brace (and attributes).
    fn parse_agg_at(
        &mut self,
        kw_pos: usize,
        name: String,
        outer_packed: bool,
    ) -> Result<(Agg, usize)> {
        let is_union = self.toks[kw_pos] == Tok::Ident("union".into());
        let mut pos = kw_pos + 1;
        if let Some(Tok::Ident(_)) = self.toks.get(pos) {
            pos += 1;
        }
        if self.toks.get(pos) != Some(&Tok::Punct("{".into())) {
            return self.fail(&format!("expected `{{` in `{name}`"));
        }
        let Some(close) = self.matching_brace(pos) else {
            return self.fail(&format!("unbalanced braces in `{name}`"));
        };
        // Attributes after the closing brace decide packing for the whole aggregate.
        let mut after = close + 1;
        let mut packed = outer_packed;
        loop {
            match self.toks.get(after) {
                Some(Tok::Ident(w)) if w == "__packed" => {
                    packed = true;
                    after += 1;
                }
                Some(Tok::Ident(w)) if w == "__attribute__" => {
                    let mut depth = 0;
                    let mut j = after + 1;
                    while j < self.toks.len() {
                        match &self.toks[j] {
                            Tok::Punct(p) if p == "(" => depth += 1,
                            Tok::Punct(p) if p == ")" => {
                                depth -= 1;
                                if depth == 0 {
                                    break;
                                }
                            }
                            Tok::Ident(w) if w == "packed" || w == "__packed__" => packed = true,
                            _ => {}
                        }
                        j += 1;
                    }
                    after = j + 1;
                }
                _ => break,
            }
        }
        let raw = self.parse_members(pos + 1, close, &name, packed)?;
        let agg = layout(is_union, name, raw, packed);
        Ok((agg, after))
    }

    fn parse_members(
        &mut self,
        mut pos: usize,
        end: usize,
        owner: &str,
        packed: bool,
    ) -> Result<Vec<RawMember>> {
        let mut out = Vec::new();
        while pos < end {
            if self.toks[pos] == Tok::Punct(";".into()) {
                pos += 1;
                continue;
            }
            // DECLARE_FLEX_ARRAY(type, name);
            if self.toks[pos] == Tok::Ident("DECLARE_FLEX_ARRAY".into()) {
                let (Some(Tok::Ident(t)), Some(Tok::Ident(n))) =
                    (self.toks.get(pos + 2), self.toks.get(pos + 4))
                else {
                    return self.fail(&format!("bad DECLARE_FLEX_ARRAY in `{owner}`"));
                };
                let Some(p) = prim_of(t) else {
                    return self
                        .fail(&format!("DECLARE_FLEX_ARRAY of unknown type `{t}` in `{owner}`"));
                };
                out.push(RawMember {
                    name: Some(n.clone()),
                    ty: Ty::Prim(p),
                    count: Some(0),
                    width: None,
                });
                pos += 6;
                continue;
            }
            let mut words = Vec::new();
            while let Some(Tok::Ident(w)) = self.toks.get(pos) {
                if w == "volatile" || w == "const" {
                    pos += 1;
                    continue;
                }
                if (w == "struct" || w == "union")
                    && (self.toks.get(pos + 1) == Some(&Tok::Punct("{".into()))
                        || self.toks.get(pos + 2) == Some(&Tok::Punct("{".into())))
                {
                    break;
                }
                words.push(w.clone());
                pos += 1;
            }
            let ty = if words.is_empty() {
                // Inline aggregate definition.
                let inner_name = match self.toks.get(pos + 1) {
                    Some(Tok::Ident(n)) => n.clone(),
                    _ => format!("{owner}::<anonymous>"),
                };
                let (agg, after) = self.parse_agg_at(pos, inner_name, packed)?;
                pos = after;
                Ty::Agg(Rc::new(agg))
            } else {
                // The last word is the member name (unless an inline aggregate came first).
                let last = words.pop().unwrap_or_default();
                let type_words = words;
                let ty = self.resolve_type(&type_words, owner)?;
                // Put the name back: handled below by reading it from `last`.
                let (count, width, next) = self.declarator_tail(pos, end, owner)?;
                out.push(RawMember { name: Some(last), ty, count, width });
                pos = next;
                continue;
            };
            // After an inline aggregate: optional member name, optional array.
            match self.toks.get(pos) {
                Some(Tok::Ident(n)) => {
                    let n = n.clone();
                    let (count, width, next) = self.declarator_tail(pos + 1, end, owner)?;
                    out.push(RawMember { name: Some(n), ty, count, width });
                    pos = next;
                }
                _ => {
                    out.push(RawMember { name: None, ty, count: None, width: None });
                    while pos < end && self.toks[pos] != Tok::Punct(";".into()) {
                        pos += 1;
                    }
                }
            }
        }
        Ok(out)
    }

    /// Parses `[N]`, `[]` or `: width` after a member name, up to and including `;`.
    fn declarator_tail(
        &mut self,
        mut pos: usize,
        end: usize,
        owner: &str,
    ) -> Result<(Option<u64>, Option<u32>, usize)> {
        let mut count = None;
        let mut width = None;
        if self.toks.get(pos) == Some(&Tok::Punct("[".into())) {
            let mut depth = 0;
            let mut j = pos;
            while j < end {
                match &self.toks[j] {
                    Tok::Punct(p) if p == "[" => depth += 1,
                    Tok::Punct(p) if p == "]" => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
            let inner = &self.toks[pos + 1..j];
            if inner.is_empty() {
                count = Some(0);
            } else {
                let mut p =
                    ExprParser { toks: inner, pos: 0, env: &self.env, layouts: &self.layouts };
                let v = p.ternary().map_err(|e| {
                    HeaderError(format!("{}: array size in `{owner}`: {e}", self.header.path))
                })?;
                if v < 0 {
                    return self.fail(&format!("negative array size in `{owner}`"));
                }
                count = Some(v as u64);
            }
            pos = j + 1;
        } else if self.toks.get(pos) == Some(&Tok::Punct(":".into())) {
            match self.toks.get(pos + 1) {
                Some(Tok::Num(n)) => width = Some(*n as u32),
                _ => return self.fail(&format!("bad bitfield width in `{owner}`")),
            }
            pos += 2;
        }
        if self.toks.get(pos) != Some(&Tok::Punct(";".into())) {
            return self.fail(&format!(
                "expected `;` in `{owner}` near token {}: {:?}",
                pos,
                self.toks.get(pos)
            ));
        }
        Ok((count, width, pos + 1))
    }

    fn resolve_type(&mut self, words: &[String], owner: &str) -> Result<Ty> {
        let joined = words.join(" ");
        if let Some(p) = prim_of(&joined) {
            return Ok(Ty::Prim(p));
        }
        match words {
            [kw, _] if kw == "enum" => Ok(Ty::Prim(Prim::U32)),
            [kw, tag] if kw == "struct" || kw == "union" => Ok(Ty::Agg(self.agg(tag)?)),
            [one] => {
                if let Some(p) = prim_of(one) {
                    return Ok(Ty::Prim(p));
                }
                // A typedef'd aggregate name.
                Ok(Ty::Agg(self.agg(one)?))
            }
            [a, b] if a == "unsigned" => match prim_of(&format!("unsigned {b}")) {
                Some(p) => Ok(Ty::Prim(p)),
                None if b == "int" => Ok(Ty::Prim(Prim::U32)),
                None => self.fail(&format!("unknown type `{joined}` in `{owner}`")),
            },
            _ => self.fail(&format!("unknown type `{joined}` in `{owner}`")),
        }
    }

    /// Enumerators of `enum NAME { ... }` or `typedef enum [tag] { ... } NAME;`, in order.
    pub fn enumeration(&self, name: &str) -> Result<Vec<(String, i128)>> {
        let mut open = None;
        for i in 0..self.toks.len() {
            if self.toks[i] != Tok::Ident("enum".into()) {
                continue;
            }
            let brace = match (self.toks.get(i + 1), self.toks.get(i + 2)) {
                (Some(Tok::Ident(n)), Some(Tok::Punct(b))) if b == "{" => {
                    if n == name {
                        open = Some(i + 2);
                        break;
                    }
                    i + 2
                }
                (Some(Tok::Punct(b)), _) if b == "{" => i + 1,
                _ => continue,
            };
            if let Some(close) = self.matching_brace(brace) {
                if self.toks.get(close + 1) == Some(&Tok::Ident(name.into())) {
                    open = Some(brace);
                    break;
                }
            }
        }
        let Some(open) = open else {
            return self.fail(&format!("enum `{name}` not found"));
        };
        self.enum_body(open, &self.env.clone(), name)
    }

    /// Enumerators of the enum body opening at token `open`, evaluated with `env`.
    fn enum_body(
        &self,
        open: usize,
        env: &BTreeMap<String, i128>,
        name: &str,
    ) -> Result<Vec<(String, i128)>> {
        let Some(close) = self.matching_brace(open) else {
            return self.fail(&format!("unbalanced enum `{name}`"));
        };
        let mut env = env.clone();
        let mut out = Vec::new();
        let mut next: i128 = 0;
        let body = &self.toks[open + 1..close];
        for item in body.split(|t| *t == Tok::Punct(",".into())) {
            if item.is_empty() {
                continue;
            }
            let Tok::Ident(ename) = &item[0] else {
                return self.fail(&format!("bad enumerator in `{name}`"));
            };
            let value = if item.len() > 2 && item[1] == Tok::Punct("=".into()) {
                let mut p =
                    ExprParser { toks: &item[2..], pos: 0, env: &env, layouts: &self.layouts };
                p.ternary().map_err(|e| {
                    HeaderError(format!("{}: enum `{name}`::{ename}: {e}", self.header.path))
                })?
            } else {
                next
            };
            env.insert(ename.clone(), value);
            out.push((ename.clone(), value));
            next = value + 1;
        }
        Ok(out)
    }
}

struct RawMember {
    name: Option<String>,
    ty: Ty,
    count: Option<u64>,
    width: Option<u32>,
}

fn round_up(v: u64, a: u64) -> u64 {
    v.div_ceil(a) * a
}

/// Places members following the x86-64 System V rules GCC applies (bitfields packed LSB-first
/// into storage units of their declared type, never straddling a unit unless packed).
fn layout(is_union: bool, name: String, raw: Vec<RawMember>, packed: bool) -> Agg {
    let mut members = Vec::new();
    let mut bitpos: u64 = 0;
    let mut max_align: u64 = 1;
    let mut max_size: u64 = 0;
    for m in raw {
        let align = m.ty.align(packed);
        max_align = max_align.max(align);
        if is_union {
            let size = m.ty.size() * m.count.unwrap_or(1);
            max_size = max_size.max(size);
            let bits = m.width.map(|w| (0, w));
            members.push(Member { name: m.name, ty: m.ty, offset: 0, count: m.count, bits });
            continue;
        }
        if let Some(width) = m.width {
            let unit_bits = m.ty.size() * 8;
            if !packed
                && (bitpos / unit_bits)
                    != ((bitpos + u64::from(width)).saturating_sub(1) / unit_bits)
            {
                bitpos = round_up(bitpos, unit_bits);
            }
            let unit_start =
                if packed { bitpos / 8 } else { (bitpos / unit_bits) * (unit_bits / 8) };
            let shift = (bitpos - unit_start * 8) as u32;
            members.push(Member {
                name: m.name,
                ty: m.ty,
                offset: unit_start,
                count: None,
                bits: Some((shift, width)),
            });
            bitpos += u64::from(width);
            continue;
        }
        let byte = round_up(round_up(bitpos, 8) / 8, align);
        let size = m.ty.size() * m.count.unwrap_or(1);
        members.push(Member { name: m.name, ty: m.ty, offset: byte, count: m.count, bits: None });
        bitpos = (byte + size) * 8;
    }
    let size = if is_union { max_size } else { round_up(bitpos, 8) / 8 };
    Agg { is_union, name, size: round_up(size, max_align), align: max_align, members }
}
