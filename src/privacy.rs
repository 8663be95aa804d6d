//! Personal data: masking resident text, and the keyed rater hash.
//!
//! A bottom layer (it imports no stage): collect masks free text before it
//! enters curated, so that analysts and a province's cluster never read a
//! phone number in clear, and render masks what it shows again (stores
//! written before masking at ingest). Landing and quarantine keep the raw
//! payload by design.
//!
//! Masking is a small tokenizer rather than regular expressions: a regex
//! that needs a non-digit on each side eats the separator between two
//! numbers, and spaces, dashes and full-width digits inside a number each
//! needed another pattern. Here a run of digits (allowing short runs of
//! spaces or dashes between groups) is read once, its digits classified as
//! ASCII, and the groups matched against the shapes phone and ID numbers are
//! written in.

use hmac::{Hmac, KeyInit, Mac};
use serde::Deserialize;
use sha2::Sha256;
use std::borrow::Cow;

/// The variable that holds the rater key when `[privacy]` names none.
pub const DEFAULT_RATER_KEY_ENV: &str = "MANYI_RATER_KEY";

/// The shortest key accepted, in bytes: the key is all that stands between a
/// rater hash and a search of the 11-digit phone space.
pub const MIN_KEY_LEN: usize = 16;

/// The key of a demo deployment. It is published here, so demo hashes are
/// not secret; `privacy.demo = true` must never reach production.
const DEMO_KEY: &str = "manyi-demo-rater-key: published, not secret, demo data only";

/// `[privacy]` in `manyi.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrivacyConfig {
    /// The name of the environment variable holding the rater key (never the
    /// key itself: secrets stay out of files).
    #[serde(default = "default_key_env")]
    pub rater_key_env: String,
    /// A demo deployment: without the variable the published demo key is
    /// used, with a warning. Production leaves this `false` (the default),
    /// and then a missing key stops every command at configuration time.
    #[serde(default)]
    pub demo: bool,
}

fn default_key_env() -> String {
    DEFAULT_RATER_KEY_ENV.into()
}

impl Default for PrivacyConfig {
    fn default() -> Self {
        PrivacyConfig { rater_key_env: default_key_env(), demo: false }
    }
}

/// Why no rater key could be had.
#[derive(Debug, thiserror::Error)]
pub enum PrivacyError {
    /// `rater_key_env` is empty.
    #[error("privacy.rater_key_env is empty: name the environment variable that holds the rater key, e.g. \"{DEFAULT_RATER_KEY_ENV}\"")]
    NoVariable,
    /// Production without the key.
    #[error(
        "environment variable {var} (privacy.rater_key_env) is not set: rater hashes need a secret key; \
         export {var}=\"$(openssl rand -hex 32)\" (keep it in the service's environment file, see README “Personal data”), \
         or for a demo deployment only set `demo = true` under [privacy]"
    )]
    Missing {
        /// The variable named in the configuration.
        var: String,
    },
    /// A key too short to be a secret.
    #[error(
        "environment variable {var} (privacy.rater_key_env) holds {len} bytes; the rater key needs at least {MIN_KEY_LEN} random bytes (openssl rand -hex 32)"
    )]
    TooShort {
        /// The variable named in the configuration.
        var: String,
        /// Its length in bytes.
        len: usize,
    },
}

impl PrivacyConfig {
    /// The rater key from the environment; the demo key (with a warning) in a
    /// demo deployment without one; an error in production without one.
    pub fn rater_key(&self) -> Result<RaterKey, PrivacyError> {
        self.rater_key_from(|var| std::env::var_os(var).map(std::ffi::OsString::into_encoded_bytes))
    }

    fn rater_key_from(&self, env: impl Fn(&str) -> Option<Vec<u8>>) -> Result<RaterKey, PrivacyError> {
        let var = self.rater_key_env.trim();
        if var.is_empty() {
            return Err(PrivacyError::NoVariable);
        }
        match env(var).filter(|k| !k.is_empty()) {
            Some(key) if key.len() < MIN_KEY_LEN => Err(PrivacyError::TooShort { var: var.into(), len: key.len() }),
            Some(key) => Ok(RaterKey::keyed(&key, false)),
            None if self.demo => {
                static WARNED: std::sync::Once = std::sync::Once::new();
                WARNED.call_once(|| {
                    tracing::warn!(
                        "using the demo rater key ([privacy] demo = true): rater hashes are not secret; \
                         for production export {var}=\"$(openssl rand -hex 32)\" and remove `demo = true`"
                    )
                });
                Ok(RaterKey::keyed(DEMO_KEY.as_bytes(), true))
            }
            None => Err(PrivacyError::Missing { var: var.into() }),
        }
    }
}

/// The secret key of rater hashes. Its `Debug` never shows the key.
#[derive(Clone)]
pub struct RaterKey {
    /// The HMAC already keyed: keying hashes the key's two pads, as much
    /// work as hashing a phone number, so it is done once, not per rating.
    mac: Hmac<Sha256>,
    demo: bool,
}

impl std::fmt::Debug for RaterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.demo { "RaterKey(demo)" } else { "RaterKey(secret)" })
    }
}

impl RaterKey {
    /// A key from bytes (tests and tools; deployments read it with
    /// [`PrivacyConfig::rater_key`]).
    pub fn from_bytes(key: &[u8]) -> RaterKey {
        RaterKey::keyed(key, false)
    }

    fn keyed(key: &[u8], demo: bool) -> RaterKey {
        // HMAC takes keys of any length, so this cannot fail.
        let mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        RaterKey { mac, demo }
    }

    /// Whether this is the published demo key.
    pub fn is_demo(&self) -> bool {
        self.demo
    }

    /// HMAC-SHA256 of the rater's phone or ID number under the key, as 24 hex
    /// digits; `None` for an empty identifier. The number is normalised first
    /// (full-width digits, spaces, dashes, a +86 prefix) so that one resident
    /// hashes alike however a system wrote the number.
    pub fn hash(&self, id: &str) -> Option<String> {
        let id = normalise_id(id);
        if id.is_empty() {
            return None;
        }
        let mut mac = self.mac.clone();
        mac.update(id.as_bytes());
        // Into a buffer of its own: `hex::encode` builds the text a
        // character at a time, a third of this function.
        let mut digits = [0u8; 24];
        hex::encode_to_slice(&mac.finalize().into_bytes()[..12], &mut digits).ok()?;
        std::str::from_utf8(&digits).ok().map(str::to_string)
    }
}

fn normalise_id(raw: &str) -> String {
    let s: String = raw
        .chars()
        .filter_map(|c| match c {
            _ if is_stripped(c) || is_separator(c) || matches!(c, '+' | '＋') => None,
            'x' | 'Ｘ' | 'ｘ' => Some('X'),
            _ => Some(digit(c).map(|d| char::from(b'0' + d)).unwrap_or(c)),
        })
        .collect();
    for prefix in ["0086", "86"] {
        if let Some(rest) = s.strip_prefix(prefix)
            && is_mobile(rest)
        {
            return rest.to_string();
        }
    }
    s
}

// ---------------------------------------------------------------- masking

/// Characters removed from resident text: bidirectional controls (U+202E
/// turns "好评" into what reads as "评好" in a report) and invisible
/// zero-width characters (inside a number they hide it from masking).
fn is_stripped(c: char) -> bool {
    matches!(c, '\u{061c}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
}

/// The value of an ASCII or full-width digit.
fn digit(c: char) -> Option<u8> {
    match c {
        '0'..='9' => Some(c as u8 - b'0'),
        '０'..='９' => Some((c as u32 - '０' as u32) as u8),
        _ => None,
    }
}

/// What residents put between the groups of one number.
fn is_separator(c: char) -> bool {
    matches!(c, ' ' | '-' | '\u{3000}' | '－' | '‐' | '‑' | '–' | '—')
}

fn is_mobile(d: &str) -> bool {
    let b = d.as_bytes();
    b.len() == 11 && b[0] == b'1' && (b'3'..=b'9').contains(&b[1]) && b.iter().all(u8::is_ascii_digit)
}

fn two(d: &str, at: usize) -> u32 {
    d.get(at..at + 2).and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// A plausible month and day at `at` (MMDD).
fn month_day(d: &str, at: usize) -> bool {
    (1..=12).contains(&two(d, at)) && (1..=31).contains(&two(d, at + 2))
}

/// 18-digit resident ID: region (first digit 1–8), birth date, sequence, check digit or X.
fn is_id18(d: &str) -> bool {
    let b = d.as_bytes();
    b.len() == 18
        && b[..17].iter().all(u8::is_ascii_digit)
        && (b[17].is_ascii_digit() || b[17] == b'X')
        && (b'1'..=b'8').contains(&b[0])
        && matches!(&d[6..8], "19" | "20")
        && month_day(d, 10)
}

/// 15-digit resident ID of before 1999: region, YYMMDD, sequence.
fn is_id15(d: &str) -> bool {
    let b = d.as_bytes();
    b.len() == 15 && b.iter().all(u8::is_ascii_digit) && (b'1'..=b'8').contains(&b[0]) && month_day(d, 8)
}

/// The length of a landline's area code at the start of `d`: 010 and 02x
/// have three digits, the others (03xx–09xx) four.
fn area_len(d: &str) -> Option<usize> {
    let b = d.as_bytes();
    match b {
        [b'0', b'1', b'0', ..] | [b'0', b'2', _, ..] => Some(3),
        [b'0', b'3'..=b'9', _, _, ..] => Some(4),
        _ => None,
    }
}

fn stars(n: usize) -> String {
    "*".repeat(n)
}

fn mask_mobile(d: &str) -> String {
    format!("{}****{}", &d[..3], &d[7..])
}

fn mask_local(local: &str) -> String {
    let keep = local.len().saturating_sub(4);
    format!("{}{}", stars(keep), &local[keep..])
}

/// One group of digits of a run: its char span and its digits as ASCII.
struct Group {
    start: usize,
    end: usize,
    digits: String,
}

/// Classifies the longest shape at the head of `gs`: how many groups it
/// covers and their masked text.
fn classify(gs: &[Group]) -> Option<(usize, String)> {
    let len = |i: usize| gs.get(i).map(|g| g.digits.len()).unwrap_or(0);
    let cat = |n: usize| gs[..n].iter().map(|g| g.digits.as_str()).collect::<String>();
    if gs.len() >= 3 {
        let d = cat(3);
        match (len(0), len(1), len(2)) {
            (3, 4, 4) if is_mobile(&d) => return Some((3, mask_mobile(&d))),
            (6, 8, 4) if is_id18(&d) => return Some((3, format!("{}********{}", &d[..6], &d[14..]))),
            _ => {}
        }
    }
    if gs.len() >= 2 {
        let d = cat(2);
        let (a, b) = (len(0), len(1));
        if matches!((a, b), (3, 8) | (7, 4)) && is_mobile(&d) {
            return Some((2, mask_mobile(&d)));
        }
        if area_len(&gs[0].digits) == Some(a) && (7..=8).contains(&b) {
            return Some((2, format!("{}-{}", gs[0].digits, mask_local(&gs[1].digits))));
        }
    }
    let d = gs.first()?.digits.as_str();
    if is_mobile(d) {
        return Some((1, mask_mobile(d)));
    }
    for prefix in ["86", "0086"] {
        if let Some(rest) = d.strip_prefix(prefix).filter(|r| is_mobile(r)) {
            return Some((1, format!("{prefix}{}", mask_mobile(rest))));
        }
    }
    if is_id18(d) {
        return Some((1, format!("{}********{}", &d[..6], &d[14..])));
    }
    if is_id15(d) {
        return Some((1, format!("{}******{}", &d[..6], &d[12..])));
    }
    if let Some(a) = area_len(d).filter(|&a| (a + 7..=a + 8).contains(&d.len())) {
        return Some((1, format!("{}{}", &d[..a], mask_local(&d[a..]))));
    }
    None
}

/// Reads the digit run starting at `i` into groups: digits, then up to three
/// separators and more digits, and so on; a 17-digit or 3-digit group may end
/// in X (an ID's check digit).
fn digit_run(chars: &[char], i: usize) -> Vec<Group> {
    let mut groups = Vec::new();
    let mut j = i;
    loop {
        let start = j;
        let mut digits = String::new();
        while let Some(d) = chars.get(j).and_then(|&c| digit(c)) {
            digits.push(char::from(b'0' + d));
            j += 1;
        }
        if matches!(digits.len(), 17 | 3)
            && matches!(chars.get(j), Some('X' | 'x' | 'Ｘ' | 'ｘ'))
            && !chars.get(j + 1).is_some_and(|c| c.is_ascii_alphanumeric())
        {
            digits.push('X');
            j += 1;
        }
        groups.push(Group { start, end: j, digits });
        let mut k = j;
        while k < chars.len() && k - j < 3 && is_separator(chars[k]) {
            k += 1;
        }
        if k > j && chars.get(k).and_then(|&c| digit(c)).is_some() && !groups.last().is_some_and(|g| g.digits.ends_with('X')) {
            j = k;
        } else {
            return groups;
        }
    }
}

fn is_email_local(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '%' | '+' | '-')
}

/// An e-mail address starting at `i`: the index past it and its masked text.
fn email_at(chars: &[char], i: usize) -> Option<(usize, String)> {
    let mut at = i;
    while at < chars.len() && is_email_local(chars[at]) {
        at += 1;
    }
    if at == i || chars.get(at) != Some(&'@') {
        return None;
    }
    let mut end = at + 1;
    while end < chars.len() && (chars[end].is_ascii_alphanumeric() || matches!(chars[end], '.' | '-')) {
        end += 1;
    }
    while end > at + 1 && matches!(chars[end - 1], '.' | '-') {
        end -= 1;
    }
    let domain: String = chars[at + 1..end].iter().collect();
    let tld = domain.rsplit('.').next().unwrap_or("");
    let ok = domain.contains('.') && tld.len() >= 2 && tld.chars().all(|c| c.is_ascii_alphabetic()) && !domain.starts_with(['.', '-']);
    ok.then(|| (end, format!("{}***@{domain}", chars[i])))
}

/// Words after which a name follows: strong ones always, weak ones (我是,
/// 本人: also "我是来办证的") only before a common surname and a name-sized word.
const NAME_TRIGGERS: [(&str, bool); 10] = [
    ("我的名字叫", true),
    ("我的名字是", true),
    ("本人姓名", true),
    ("名字叫", true),
    ("名字是", true),
    ("联系人", true),
    ("我叫", true),
    ("姓名", true),
    ("我是", false),
    ("本人", false),
];

/// Whether `c` is the first character of one of [`NAME_TRIGGERS`]. A match
/// rather than `"我本名姓联".contains(c)`: that encodes each character of every
/// comment and searches the text for it, about 1 % of reading a rating file.
fn starts_a_name_trigger(c: char) -> bool {
    matches!(c, '我' | '本' | '名' | '姓' | '联')
}

const SURNAMES: &str = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢\
                        姜崔钟谭陆汪范金石廖贾夏韦付傅方邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤常康施\
                        牛樊葛邢安齐易乔伍庞颜倪庄聂章鲁岳翟殷詹申欧耿兰焦俞左柳甘祝包宁尚符舒阮柯纪梅童凌毕单季裴霍涂苗谷盛曲翁冉\
                        骆蓝路游辛靳管柴蒙鲍华喻祁蒲房滕屈饶解牟艾尤阳穆农卓古吉缪简车项连芦麦褚娄窦戚岑景宫费卜冷晏席卫米柏宗瞿桂\
                        佟臧闵苟邬边卞姬仇栾隋刁沙荣巫寇桑郎甄丛仲虞敖巩佘池查麻苑迟邝白";

const COMPOUND_SURNAMES: [&str; 20] = [
    "欧阳", "司马", "上官", "诸葛", "东方", "皇甫", "尉迟", "公孙", "慕容", "令狐", "长孙", "宇文", "夏侯", "轩辕", "端木", "独孤", "南宫",
    "西门", "申屠", "司徒",
];

/// Characters that end a name in running text ("我是李四来反映" → 李四).
const AFTER_NAME: &str = "的来在住想要说反投电手联是去到给家也又对向找打办";

/// What follows 联系人 or 姓名 when it is not a name.
const NOT_NAMES: [&str; 6] = ["电话", "手机", "方式", "号码", "邮箱", "地址"];

fn is_han(c: char) -> bool {
    matches!(c, '\u{4e00}'..='\u{9fff}' | '\u{3400}'..='\u{4dbf}' | '\u{20000}'..='\u{2a6df}')
}

fn starts_with(chars: &[char], i: usize, word: &str) -> bool {
    word.chars().enumerate().all(|(k, w)| chars.get(i + k) == Some(&w))
}

/// The length in chars of the name at `i` after a trigger, if there is one.
fn name_at(chars: &[char], i: usize, strong: bool) -> Option<usize> {
    let run = chars[i..].iter().take(6).take_while(|&&c| is_han(c)).count();
    if run < 2 || NOT_NAMES.iter().any(|w| starts_with(chars, i, w)) {
        return None;
    }
    let compound = run >= 3 && COMPOUND_SURNAMES.iter().any(|s| starts_with(chars, i, s));
    let surname = if compound { 2 } else { 1 };
    if !strong && !compound && !SURNAMES.contains(chars[i]) {
        return None;
    }
    let cut = (surname + 1..run).find(|&k| AFTER_NAME.contains(chars[i + k])).unwrap_or(run);
    if strong { Some(cut.min(surname + 2)) } else { (cut <= surname + 2).then_some(cut) }
}

/// Masks personal data in resident text: mobile numbers (138****1234, also
/// with +86, spaces, dashes or full-width digits), landlines
/// (0571-****4321), resident ID numbers of 18 and 15 digits
/// (110101********1234), e-mail addresses (z***@163.com) and self-introduced
/// names (我叫张**, 姓名：王*, 我叫欧***), and strips bidirectional and
/// zero-width control characters. Dates, amounts, 办件编号 and short
/// numbers are left alone, and masked text masks to itself.
pub fn mask(text: &str) -> Cow<'_, str> {
    // Most comments have nothing to mask: one pass to find out, no copy.
    let suspect = |c: char| digit(c).is_some() || c == '@' || is_stripped(c) || starts_a_name_trigger(c);
    if !text.chars().any(suspect) {
        return Cow::Borrowed(text);
    }
    let chars: Vec<char> = text.chars().filter(|&c| !is_stripped(c)).collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    'scan: while i < chars.len() {
        let c = chars[i];
        if is_email_local(c)
            && (i == 0 || !is_email_local(chars[i - 1]))
            && let Some((end, masked)) = email_at(&chars, i)
        {
            out.push_str(&masked);
            i = end;
            continue;
        }
        if digit(c).is_some() {
            let groups = digit_run(&chars, i);
            let (mut g, mut pos) = (0, i);
            while g < groups.len() {
                match classify(&groups[g..]) {
                    Some((n, masked)) => {
                        out.extend(&chars[pos..groups[g].start]);
                        out.push_str(&masked);
                        pos = groups[g + n - 1].end;
                        g += n;
                    }
                    None => {
                        out.extend(&chars[pos..groups[g].end]);
                        pos = groups[g].end;
                        g += 1;
                    }
                }
            }
            i = pos;
            continue;
        }
        for (trigger, strong) in NAME_TRIGGERS {
            if starts_with(&chars, i, trigger) {
                let mut k = i + trigger.chars().count();
                while k < chars.len() && k - i < trigger.chars().count() + 2 && matches!(chars[k], ':' | '：' | ' ' | '\u{3000}') {
                    k += 1;
                }
                out.extend(&chars[i..k]);
                if let Some(n) = name_at(&chars, k, strong) {
                    out.push(chars[k]);
                    out.push_str(&stars(n - 1));
                    k += n;
                }
                i = k;
                continue 'scan;
            }
        }
        out.push(c);
        i += 1;
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Real-world shapes of resident text → what a report or curated may show.
    const TABLE: &[(&str, &str)] = &[
        // Mobile numbers.
        ("电话13812341234请回电", "电话138****1234请回电"),
        ("13812341234", "138****1234"),
        ("13812341234,13912345678", "138****1234,139****5678"),
        ("13812341234，13912345678", "138****1234，139****5678"),
        ("13812341234/13912345678", "138****1234/139****5678"),
        ("电话+8613812341234", "电话+86138****1234"),
        ("+86 13812341234", "+86 138****1234"),
        ("+86 138 1234 1234", "+86 138****1234"),
        ("8613812341234", "86138****1234"),
        ("0086-13812341234", "0086-138****1234"),
        ("138 1234 1234", "138****1234"),
        ("138-1234-1234", "138****1234"),
        ("138 - 1234 - 1234", "138****1234"),
        ("１３８１２３４１２３４", "138****1234"),
        ("手机：１３８－１２３４－１２３４。", "手机：138****1234。"),
        ("tel:15900001111", "tel:159****1111"),
        ("第3次来，13812341234", "第3次来，138****1234"),
        ("共 3 13812341234", "共 3 138****1234"),
        ("2026-10-07 13812341234", "2026-10-07 138****1234"),
        ("138\u{200b}1234\u{200b}1234", "138****1234"),
        // Landlines.
        ("座机0571-87654321", "座机0571-****4321"),
        ("010-12345678转8001", "010-****5678转8001"),
        ("0571 87654321", "0571-****4321"),
        ("057187654321", "0571****4321"),
        // ID numbers.
        ("身份证110101199001011234", "身份证110101********1234"),
        ("身份证11010119900101123X", "身份证110101********123X"),
        ("身份证11010119900101123x", "身份证110101********123X"),
        ("110101199001011234,110101198512123456", "110101********1234,110101********3456"),
        ("老身份证110101900101123", "老身份证110101******123"),
        ("110101 19900101 1234", "110101********1234"),
        ("１１０１０１１９９００１０１１２３４", "110101********1234"),
        // E-mail.
        ("邮箱zhangsan@163.com", "邮箱z***@163.com"),
        ("发到12345678@qq.com谢谢", "发到1***@qq.com谢谢"),
        ("li.si+x@mail.example.gov.cn。", "l***@mail.example.gov.cn。"),
        // Names.
        ("我叫张三丰，态度差", "我叫张**，态度差"),
        ("我叫欧阳娜娜", "我叫欧***"),
        ("我叫李四。", "我叫李*。"),
        ("我是李四", "我是李*"),
        ("我是李四，电话13812341234", "我是李*，电话138****1234"),
        ("姓名：王五", "姓名：王*"),
        ("姓名:王五 电话13812341234", "姓名:王* 电话138****1234"),
        ("联系人：诸葛亮亮", "联系人：诸***"),
        ("联系人电话13812341234", "联系人电话138****1234"),
        ("本人王小明反映", "本人王**反映"),
        // Bidirectional controls are stripped.
        ("好评\u{202e}评差", "好评评差"),
        ("\u{2066}13812341234\u{2069}", "138****1234"),
        ("a\u{200e}b\u{200f}c\u{202a}d\u{202b}e\u{202c}f\u{202d}g\u{2067}h\u{2068}i", "abcdefghi"),
        // Not personal data: unchanged.
        ("排队2小时", "排队2小时"),
        ("来了3次都没办成", "来了3次都没办成"),
        ("2026-10-07上午", "2026-10-07上午"),
        ("2026年10月7日 14:22", "2026年10月7日 14:22"),
        ("收费1,280元，又收了35.5元", "收费1,280元，又收了35.5元"),
        ("办件编号330100-2026-000123", "办件编号330100-2026-000123"),
        ("拨打12345热线", "拨打12345热线"),
        ("客服400-123-4567", "客服400-123-4567"),
        ("我是来办证的", "我是来办证的"),
        ("我是高龄老人", "我是高龄老人"),
        ("本人觉得服务很好", "本人觉得服务很好"),
        ("3号楼2单元501室", "3号楼2单元501室"),
        ("等了20260107分钟", "等了20260107分钟"),
        ("", ""),
        ("very good 👍", "very good 👍"),
        // Already masked text stays as it is.
        ("138****1234", "138****1234"),
        ("110101********1234", "110101********1234"),
        ("z***@163.com", "z***@163.com"),
        ("我叫张**", "我叫张**"),
    ];

    #[test]
    fn masking_table() {
        let mut wrong = Vec::new();
        for (input, want) in TABLE {
            let got = mask(input);
            if got != *want {
                wrong.push(format!("{input:?}: got {got:?}, want {want:?}"));
            }
        }
        assert!(wrong.is_empty(), "{} of {} shapes masked wrongly:\n{}", wrong.len(), TABLE.len(), wrong.join("\n"));
    }

    #[test]
    fn masking_is_idempotent() {
        for (input, _) in TABLE {
            let once = mask(input).into_owned();
            assert_eq!(mask(&once), once, "masking {input:?} twice");
        }
    }
    #[test]
    fn text_with_nothing_to_mask_is_not_copied() {
        assert!(matches!(mask("排队两小时，态度很好"), Cow::Borrowed(_)));
    }

    #[test]
    fn every_name_trigger_makes_a_comment_suspect() {
        // The quick check lists the triggers' first characters by hand.
        for (trigger, _) in NAME_TRIGGERS {
            let first = trigger.chars().next().expect("a trigger has text");
            assert!(starts_a_name_trigger(first), "{trigger} starts with {first}, which the quick check misses");
        }
        assert!(matches!(mask("我叫张伟，联系我"), Cow::Owned(_)));
    }

    #[test]
    fn production_needs_a_key_and_a_demo_falls_back_to_the_published_one() {
        let prod = PrivacyConfig::default();
        assert!(matches!(prod.rater_key_from(|_| None), Err(PrivacyError::Missing { .. })));
        assert!(matches!(prod.rater_key_from(|_| Some(Vec::new())), Err(PrivacyError::Missing { .. })));
        assert!(matches!(prod.rater_key_from(|_| Some(b"short".to_vec())), Err(PrivacyError::TooShort { len: 5, .. })));
        let key = prod.rater_key_from(|v| (v == DEFAULT_RATER_KEY_ENV).then(|| b"0123456789abcdef".to_vec())).expect("key");
        assert!(!key.is_demo());
        assert!(!format!("{key:?}").contains("0123"), "Debug never shows the key");
        let demo = PrivacyConfig { demo: true, ..PrivacyConfig::default() };
        assert!(demo.rater_key_from(|_| None).expect("demo key").is_demo());
        assert!(!demo.rater_key_from(|_| Some(b"0123456789abcdef".to_vec())).expect("key").is_demo(), "a set variable wins");
        let nameless = PrivacyConfig { rater_key_env: " ".into(), demo: true };
        assert!(matches!(nameless.rater_key_from(|_| None), Err(PrivacyError::NoVariable)));
    }

    #[test]
    fn rater_hash_is_keyed_and_reads_a_number_however_written() {
        let a = RaterKey::from_bytes(b"0123456789abcdef");
        let b = RaterKey::from_bytes(b"fedcba9876543210");
        let h = a.hash("13812341234").expect("hash");
        // The first 12 bytes of HMAC-SHA256, as Python's `hmac` computes
        // them: stored hashes must not change with how the key is held.
        assert_eq!(h, "d3e5fa4d520dc9ab4fa3e8c7");
        assert_ne!(b.hash("13812341234").as_deref(), Some(h.as_str()), "another key, another hash");
        for same in ["138 1234 1234", "+86 138-1234-1234", "１３８１２３４１２３４", "8613812341234"] {
            assert_eq!(a.hash(same).as_deref(), Some(h.as_str()), "{same}");
        }
        assert_eq!(a.hash("11010119900101123x"), a.hash("11010119900101123X"));
        assert_eq!(a.hash(""), None);
        assert_eq!(a.hash("  "), None);
    }
}
