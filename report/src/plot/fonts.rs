//! Text in any script: which font draws each character, and where each glyph goes.
//!
//! The embedded DejaVu Sans comes first (Latin, Greek, Cyrillic, Arabic, many
//! symbols). A character it lacks (Chinese 鼠, most emoji, …) is drawn with a
//! font of the system that has it, found per character with `fontdb` (the
//! system's font directories, as fontconfig's configuration lists them):
//! regular upright sans faces first, then a few known families (Noto Sans CJK
//! SC, Noto Sans Arabic, Noto Color Emoji), then any. The system's fonts are
//! scanned only the first time a character needs one, once per process; the
//! choice per character is cached. Set `SWEEP_FONT_FALLBACK=0` to use the
//! embedded font alone (characters it lacks then show as its empty box).
//!
//! A character that no font of the machine has is drawn as an empty box; the
//! command then warns once (`warn_missing_glyphs`, called when its files are
//! written), naming the characters, their script and the Debian/Ubuntu package
//! whose fonts cover it (`Script::package`). Not with `SWEEP_FONT_FALLBACK=0`:
//! the boxes are then what was asked for. `sweep doctor` shows which scripts
//! the installed fonts cover (`script_coverage`).
//!
//! Text is laid out like a browser would: split into bidirectional runs
//! (`unicode-bidi`, so Arabic and Hebrew read right to left), each run into
//! pieces per font, and each piece shaped by `rustybuzz` (HarfBuzz's shaping:
//! Arabic letters join, marks attach, kerning, emoji sequences). Glyphs of a
//! fallback font are scaled to the same em size as DejaVu Sans; colour emoji
//! fonts that carry PNG bitmaps (CBDT, sbix) are drawn from those bitmaps.
use ab_glyph::{Font, FontRef, GlyphId, PxScale, ScaleFont};
use serde::Serialize;
use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

/// The family name of the embedded font, as SVG output names it.
pub const PRIMARY_FAMILY: &str = "DejaVu Sans";

/// Families preferred, in this order, among the system's fonts that have a character.
const PREFERRED: [&str; 7] = [
    "Noto Sans",
    "Noto Sans CJK SC",
    "Noto Sans Arabic",
    "Noto Sans Arabic UI",
    "Noto Color Emoji",
    "Noto Emoji",
    "Symbola",
];

/// One font face: `ab_glyph` draws its glyphs, `rustybuzz` shapes text with it.
pub struct Face {
    pub family: String,
    pub glyphs: FontRef<'static>,
    shaper: rustybuzz::Face<'static>,
    units_per_em: f32,
    /// ascent − descent in font units: what `ab_glyph`'s `PxScale` is relative to.
    height_unscaled: f32,
}

impl Face {
    fn new(family: String, data: &'static [u8], index: u32) -> Option<Face> {
        let glyphs = FontRef::try_from_slice_and_index(data, index).ok()?;
        let shaper = rustybuzz::Face::from_slice(data, index)?;
        let units_per_em = glyphs.units_per_em().filter(|u| *u > 0.0)?;
        let height_unscaled = glyphs.height_unscaled();
        (height_unscaled > 0.0).then_some(Face {
            family,
            glyphs,
            shaper,
            units_per_em,
            height_unscaled,
        })
    }

    pub fn covers(&self, c: char) -> bool {
        self.glyphs.glyph_id(c).0 != 0
    }

    /// The `ab_glyph` scale that gives this face an em of `em_px` pixels.
    pub fn scale_for_em(&self, em_px: f32) -> PxScale {
        PxScale::from(em_px * self.height_unscaled / self.units_per_em)
    }
}

/// The embedded DejaVu Sans.
pub fn primary() -> Option<&'static Face> {
    static PRIMARY: OnceLock<Option<Face>> = OnceLock::new();
    PRIMARY
        .get_or_init(|| Face::new(PRIMARY_FAMILY.into(), dejavu::sans::regular(), 0))
        .as_ref()
}

fn fallback_enabled() -> bool {
    !matches!(
        std::env::var("SWEEP_FONT_FALLBACK").as_deref(),
        Ok("0" | "off" | "false" | "no")
    )
}

/// The system's fonts, scanned on first need, and what was chosen from them.
#[derive(Default)]
struct System {
    db: Option<fontdb::Database>,
    /// Face ids in order of preference.
    candidates: Vec<fontdb::ID>,
    by_char: HashMap<char, Option<&'static Face>>,
    faces: HashMap<fontdb::ID, Option<&'static Face>>,
    files: HashMap<PathBuf, &'static [u8]>,
    /// Characters no font had, in the order met, and those already warned about.
    missing: Vec<char>,
    warned: BTreeSet<char>,
}

impl System {
    fn scan(&mut self) -> &fontdb::Database {
        self.db.get_or_insert_with(|| {
            let mut db = fontdb::Database::new();
            db.load_system_fonts();
            let mut faces: Vec<&fontdb::FaceInfo> = db.faces().collect();
            faces.sort_by_cached_key(|f| {
                let family = f
                    .families
                    .first()
                    .map(|(n, _)| n.clone())
                    .unwrap_or_default();
                let known = PREFERRED
                    .iter()
                    .position(|p| *p == family)
                    .unwrap_or(PREFERRED.len());
                let sans = family.contains("Sans")
                    || family.contains("Gothic")
                    || family.contains("Emoji");
                (
                    f.style != fontdb::Style::Normal,
                    f.weight.0.abs_diff(400),
                    f.monospaced || family.contains("Mono"),
                    !sans,
                    known,
                    family,
                    format!("{:?}", f.source_path()),
                    f.index,
                )
            });
            self.candidates = faces.iter().map(|f| f.id).collect();
            db
        })
    }

    fn face_for(&mut self, c: char) -> Option<&'static Face> {
        if let Some(found) = self.by_char.get(&c) {
            return *found;
        }
        self.scan();
        let mut found = None;
        for i in 0..self.candidates.len() {
            let id = self.candidates[i];
            let db = self.db.as_ref()?;
            let has = db
                .with_face_data(id, |data, index| {
                    ttf_parser_face(data, index).is_some_and(|f| f.glyph_index(c).is_some())
                })
                .unwrap_or(false);
            if has && let Some(face) = self.load(id) {
                found = Some(face);
                break;
            }
        }
        self.by_char.insert(c, found);
        if found.is_none() && !ignorable(c) {
            self.missing.push(c);
        }
        found
    }

    /// The face's data, read once per file and kept for the life of the process.
    fn load(&mut self, id: fontdb::ID) -> Option<&'static Face> {
        if let Some(f) = self.faces.get(&id) {
            return *f;
        }
        let info = self.db.as_ref()?.face(id)?.clone();
        let family = info
            .families
            .first()
            .map(|(n, _)| n.clone())
            .unwrap_or_else(|| info.post_script_name.clone());
        let data = match &info.source {
            fontdb::Source::Binary(b) => {
                Some(&*Box::leak((**b).as_ref().to_vec().into_boxed_slice()))
            }
            fontdb::Source::File(path) | fontdb::Source::SharedFile(path, _) => {
                match self.files.get(path) {
                    Some(d) => Some(*d),
                    None => std::fs::read(path).ok().map(|bytes| {
                        let d: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                        self.files.insert(path.clone(), d);
                        d
                    }),
                }
            }
        };
        let face: Option<&'static Face> = data
            .and_then(|d| Face::new(family, d, info.index))
            .map(|f| &*Box::leak(Box::new(f)));
        self.faces.insert(id, face);
        face
    }
}

trait SourcePath {
    fn source_path(&self) -> Option<&std::path::Path>;
}

impl SourcePath for fontdb::FaceInfo {
    fn source_path(&self) -> Option<&std::path::Path> {
        match &self.source {
            fontdb::Source::File(p) | fontdb::Source::SharedFile(p, _) => Some(p),
            fontdb::Source::Binary(_) => None,
        }
    }
}

fn ttf_parser_face(data: &[u8], index: u32) -> Option<rustybuzz::ttf_parser::Face<'_>> {
    rustybuzz::ttf_parser::Face::parse(data, index).ok()
}

fn system() -> &'static Mutex<System> {
    static SYSTEM: OnceLock<Mutex<System>> = OnceLock::new();
    SYSTEM.get_or_init(|| Mutex::new(System::default()))
}

/// The face that draws `c`: the embedded font when it has it, else the first
/// system font (in order of preference) that does, else the embedded font (its
/// empty box).
pub fn face_for(c: char) -> Option<&'static Face> {
    let primary = primary()?;
    if primary.covers(c) || !fallback_enabled() || c.is_control() {
        return Some(primary);
    }
    let found = system().lock().map(|mut s| s.face_for(c)).unwrap_or(None);
    Some(found.unwrap_or(primary))
}

/// Characters that belong to the glyph before them (combining marks, joiners,
/// variation selectors, emoji modifiers and tags): they stay in its font.
fn clings(c: char) -> bool {
    matches!(c as u32,
        0x0300..=0x036F | 0x0483..=0x0489 | 0x0591..=0x05BD | 0x0610..=0x061A | 0x064B..=0x065F | 0x0670 | 0x06D6..=0x06ED
        | 0x1AB0..=0x1AFF | 0x1DC0..=0x1DFF | 0x200C | 0x200D | 0x20D0..=0x20FF | 0xFE00..=0xFE0F | 0xFE20..=0xFE2F
        | 0x1F3FB..=0x1F3FF | 0xE0020..=0xE007F | 0xE0100..=0xE01EF)
}

/// One glyph placed on the line: its face, id and pen position in pixels
/// (x from the start of the line, y the offset from the baseline, down positive).
#[derive(Clone, Copy)]
pub struct Placed {
    pub face: &'static Face,
    pub id: GlyphId,
    pub x: f32,
    pub y: f32,
}

/// A laid-out line of text.
pub struct Line {
    pub glyphs: Vec<Placed>,
    /// Advance width in pixels.
    pub width: f32,
    /// The em size in pixels every face is drawn at.
    pub em_px: f32,
    /// Ascent and descent (negative) of the embedded font, in pixels: the line's vertical metrics.
    pub ascent: f32,
    pub descent: f32,
}

impl Line {
    /// Families of the faces used, the embedded one first, each once.
    pub fn families(&self) -> Vec<&'static str> {
        let mut out = vec![PRIMARY_FAMILY];
        for g in &self.glyphs {
            if !out.contains(&g.face.family.as_str()) {
                out.push(g.face.family.as_str());
            }
        }
        out
    }
}

/// Lays out one line of `text` at plotters' font `size` (the pixel height
/// that `ab_glyph` scales DejaVu Sans to).
pub fn layout(text: &str, size: f32) -> Option<Line> {
    let primary = primary()?;
    let scaled = primary.glyphs.as_scaled(PxScale::from(size));
    let em_px = size * primary.units_per_em / primary.height_unscaled;
    let mut line = Line {
        glyphs: Vec::new(),
        width: 0.0,
        em_px,
        ascent: scaled.ascent(),
        descent: scaled.descent(),
    };
    if text.is_empty() {
        return Some(line);
    }
    let bidi = unicode_bidi::BidiInfo::new(text, None);
    let mut pen = 0f32;
    for para in &bidi.paragraphs {
        let (levels, runs) = bidi.visual_runs(para, para.range.clone());
        for run in runs {
            let rtl = levels[run.start].is_rtl();
            // Pieces of one font each, in logical order.
            let mut pieces: Vec<(&'static Face, std::ops::Range<usize>)> = Vec::new();
            for (i, c) in text[run.clone()].char_indices() {
                let at = run.start + i;
                let end = at + c.len_utf8();
                if let Some((face, range)) = pieces.last_mut()
                    && (clings(c) && face.covers(c)
                        || face_for(c).is_some_and(|f| std::ptr::eq(f, *face)))
                {
                    range.end = end;
                    continue;
                }
                pieces.push((face_for(c).unwrap_or(primary), at..end));
            }
            if rtl {
                pieces.reverse();
            }
            for (face, range) in pieces {
                let mut buf = rustybuzz::UnicodeBuffer::new();
                buf.push_str(&text[range]);
                buf.set_direction(if rtl {
                    rustybuzz::Direction::RightToLeft
                } else {
                    rustybuzz::Direction::LeftToRight
                });
                buf.guess_segment_properties();
                let shaped = rustybuzz::shape(&face.shaper, &[], buf);
                let k = em_px / face.units_per_em;
                for (info, pos) in shaped.glyph_infos().iter().zip(shaped.glyph_positions()) {
                    line.glyphs.push(Placed {
                        face,
                        id: GlyphId(info.glyph_id as u16),
                        x: pen + pos.x_offset as f32 * k,
                        y: -(pos.y_offset as f32) * k,
                    });
                    pen += pos.x_advance as f32 * k;
                }
            }
        }
    }
    line.width = pen;
    Some(line)
}

/// Width and height in pixels as plotters measures text (its `ab_glyph`
/// backend: advance width, and size ÷ 1.24 for the height), for any script.
pub fn text_size(text: &str, size: f64) -> (u32, u32) {
    let w = layout(text, size as f32)
        .map(|l| l.width)
        .unwrap_or(text.chars().count() as f32 * size as f32 * 0.6);
    (w.max(0.0) as u32, (size / 1.24) as u32)
}

/// The SVG `font-family` for `text`: the embedded font's family, the system
/// families that draw what it lacks, then the generic `sans-serif`.
pub fn css_families(text: &str, size: f64) -> String {
    let families = layout(text, size as f32)
        .map(|l| l.families())
        .unwrap_or_else(|| vec![PRIMARY_FAMILY]);
    let mut out: Vec<String> = families.iter().map(|f| css_name(f)).collect();
    out.push("sans-serif".into());
    out.join(", ")
}

/// A family name as CSS takes it: bare when it is a sequence of identifiers, else quoted.
fn css_name(name: &str) -> String {
    let plain = name.split(' ').all(|w| {
        let mut cs = w.chars();
        cs.next().is_some_and(|c| c.is_ascii_alphabetic())
            && cs.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    });
    if plain {
        name.to_string()
    } else {
        format!("'{}'", name.replace(['\'', '\\'], ""))
    }
}

/// Draws one glyph whose pen position is `at` (pixels, y down, relative to
/// wherever the caller's text is anchored): calls `put(x, y, colour, alpha)`
/// per pixel, with the colour for bitmap (emoji) glyphs and `None` for outline
/// glyphs, which take the text's colour.
pub fn rasterize(
    g: &Placed,
    em_px: f32,
    at: (f32, f32),
    mut put: impl FnMut(i32, i32, Option<[u8; 3]>, f32),
) {
    let glyph =
        g.id.with_scale_and_position(g.face.scale_for_em(em_px), ab_glyph::point(at.0, at.1));
    if let Some(outline) = g.face.glyphs.outline_glyph(glyph) {
        let b = outline.px_bounds();
        let (bx, by) = (b.min.x as i32, b.min.y as i32);
        outline.draw(|x, y, coverage| {
            if coverage > 0.0 {
                put(bx + x as i32, by + y as i32, None, coverage.min(1.0));
            }
        });
        return;
    }
    // Colour emoji: the bitmap of the strike nearest the size, scaled.
    let Some(img) = g.face.glyphs.glyph_raster_image2(g.id, em_px.ceil() as u16) else {
        return;
    };
    if !matches!(img.format, ab_glyph::GlyphImageFormat::Png) || img.pixels_per_em == 0 {
        return;
    }
    let Ok(decoded) = image::load_from_memory_with_format(img.data, image::ImageFormat::Png) else {
        return;
    };
    let k = em_px / img.pixels_per_em as f32;
    let (w, h) = (
        ((decoded.width() as f32 * k).round() as u32).max(1),
        ((decoded.height() as f32 * k).round() as u32).max(1),
    );
    let small = image::imageops::resize(
        &decoded.to_rgba8(),
        w,
        h,
        image::imageops::FilterType::Triangle,
    );
    // The strike's origin: x from the pen, y of the image's bottom above the baseline.
    let left = (at.0 + img.origin.x * k).round() as i32;
    let top = (at.1 - (img.origin.y + img.height as f32) * k).round() as i32;
    for (x, y, p) in small.enumerate_pixels() {
        if p.0[3] > 0 {
            put(
                left + x as i32,
                top + y as i32,
                Some([p.0[0], p.0[1], p.0[2]]),
                p.0[3] as f32 / 255.0,
            );
        }
    }
}

/// A writing system, as far as which font package draws it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Script {
    Latin,
    Greek,
    Cyrillic,
    Arabic,
    Hebrew,
    Devanagari,
    Thai,
    /// Chinese, Japanese (kana too) and Korean (Hangul).
    #[serde(rename = "CJK")]
    Cjk,
    #[serde(rename = "emoji")]
    Emoji,
    #[serde(rename = "other")]
    Other,
}

impl Script {
    /// The scripts `sweep doctor` probes, each with one character of it.
    pub const PROBED: [(Script, char); 9] = [
        (Script::Latin, 'A'),
        (Script::Greek, 'Ω'),
        (Script::Cyrillic, 'Ж'),
        (Script::Arabic, 'ع'),
        (Script::Hebrew, 'א'),
        (Script::Devanagari, 'क'),
        (Script::Thai, 'ก'),
        (Script::Cjk, '山'),
        (Script::Emoji, '🐐'),
    ];

    pub fn of(c: char) -> Script {
        match c as u32 {
            0x41..=0x5A | 0x61..=0x7A | 0xC0..=0x24F | 0x1E00..=0x1EFF => Script::Latin,
            0x370..=0x3FF | 0x1F00..=0x1FFF => Script::Greek,
            0x400..=0x52F | 0x1C80..=0x1C8F | 0x2DE0..=0x2DFF | 0xA640..=0xA69F => Script::Cyrillic,
            0x590..=0x5FF | 0xFB1D..=0xFB4F => Script::Hebrew,
            0x600..=0x6FF | 0x750..=0x77F | 0x8A0..=0x8FF | 0xFB50..=0xFDFF | 0xFE70..=0xFEFF => {
                Script::Arabic
            }
            0x900..=0x97F | 0xA8E0..=0xA8FF => Script::Devanagari,
            0xE00..=0xE7F => Script::Thai,
            0x1100..=0x11FF
            | 0x2E80..=0x2FDF
            | 0x3000..=0x303F
            | 0x3040..=0x30FF
            | 0x3100..=0x31FF
            | 0x3200..=0x9FFF
            | 0xA960..=0xA97F
            | 0xAC00..=0xD7FF
            | 0xF900..=0xFAFF
            | 0xFF00..=0xFFEF
            | 0x20000..=0x3FFFF => Script::Cjk,
            0x2600..=0x27BF | 0x1F000..=0x1FAFF => Script::Emoji,
            _ => Script::Other,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Script::Latin => "Latin",
            Script::Greek => "Greek",
            Script::Cyrillic => "Cyrillic",
            Script::Arabic => "Arabic",
            Script::Hebrew => "Hebrew",
            Script::Devanagari => "Devanagari",
            Script::Thai => "Thai",
            Script::Cjk => "CJK",
            Script::Emoji => "emoji",
            Script::Other => "other",
        }
    }

    /// The Debian/Ubuntu package whose fonts draw this script (Fedora and
    /// others name theirs google-noto-*).
    pub fn package(self) -> &'static str {
        match self {
            Script::Cjk => "fonts-noto-cjk",
            Script::Emoji => "fonts-noto-color-emoji",
            Script::Latin
            | Script::Greek
            | Script::Cyrillic
            | Script::Arabic
            | Script::Hebrew
            | Script::Devanagari
            | Script::Thai => "fonts-noto-core",
            Script::Other => "fonts-noto",
        }
    }
}

/// Characters that draw nothing of their own (spaces, joiners, variation
/// selectors, marks that cling to the glyph before them): no font need have them.
fn ignorable(c: char) -> bool {
    c.is_control()
        || c.is_whitespace()
        || clings(c)
        || matches!(c as u32, 0x200B..=0x200F | 0x2060..=0x206F | 0xFEFF | 0xE0000..=0xE0FFF)
}

/// The family that draws `c`: the embedded DejaVu Sans when it has it, else the
/// first face of `db` that does (in `db`'s order).
pub fn covering_family(c: char, db: &fontdb::Database) -> Option<String> {
    if primary().is_some_and(|p| p.covers(c)) {
        return Some(PRIMARY_FAMILY.to_string());
    }
    db.faces().find_map(|f| {
        let has = db
            .with_face_data(f.id, |data, index| {
                ttf_parser_face(data, index).is_some_and(|face| face.glyph_index(c).is_some())
            })
            .unwrap_or(false);
        has.then(|| {
            f.families
                .first()
                .map(|(n, _)| n.clone())
                .unwrap_or_else(|| f.post_script_name.clone())
        })
    })
}

/// The characters of `text` (each once, in order) that neither the embedded
/// font nor any face of `db` draws.
pub fn missing_glyphs(text: &str, db: &fontdb::Database) -> Vec<char> {
    let mut out: Vec<char> = Vec::new();
    for c in text.chars() {
        if !ignorable(c) && !out.contains(&c) && covering_family(c, db).is_none() {
            out.push(c);
        }
    }
    out
}

/// The warning for characters no font draws: each script's characters, the
/// package to install for it, and where to look next. `None` when nothing is missing.
pub fn missing_glyphs_warning(missing: &[char]) -> Option<String> {
    if missing.is_empty() {
        return None;
    }
    let mut scripts: Vec<(Script, Vec<char>)> = Vec::new();
    for &c in missing {
        let script = Script::of(c);
        match scripts.iter_mut().find(|(s, _)| *s == script) {
            Some((_, cs)) => cs.push(c),
            None => scripts.push((script, vec![c])),
        }
    }
    let groups: Vec<String> = scripts
        .iter()
        .map(|(s, cs)| {
            let chars: Vec<String> = cs.iter().map(|c| c.to_string()).collect();
            format!("{} ({}: {})", chars.join(" "), s.name(), s.package())
        })
        .collect();
    let mut packages: Vec<&str> = scripts.iter().map(|(s, _)| s.package()).collect();
    packages.dedup();
    Some(format!(
        "warning: no installed font draws {}; they show as empty boxes. Install the fonts (Debian/Ubuntu: `apt install {}`) and draw again; `sweep doctor` lists the scripts the installed fonts cover",
        groups.join(", "),
        packages.join(" ")
    ))
}

/// Warns (once per character per process) about the characters that were
/// laid out since the last call and that no font of the machine draws.
pub fn warn_missing_glyphs() {
    let Ok(mut guard) = system().lock() else {
        return;
    };
    let s = &mut *guard;
    let fresh: Vec<char> = s
        .missing
        .drain(..)
        .filter(|c| s.warned.insert(*c))
        .collect();
    drop(guard);
    if let Some(w) = missing_glyphs_warning(&fresh) {
        sweep_protocol::log!("{w}");
    }
}

/// One probed script: the family that draws its sample character (`None`:
/// no installed font) and the package that would.
#[derive(Debug, Clone, Serialize)]
pub struct ScriptCoverage {
    pub script: Script,
    pub sample: char,
    pub font: Option<String>,
    pub package: &'static str,
}

/// The machine's fonts as the charts find them (fontconfig's directories).
pub fn system_fonts() -> fontdb::Database {
    let mut db = fontdb::Database::new();
    db.load_system_fonts();
    db
}

/// Which of `Script::PROBED` the embedded font or a face of `db` draws.
pub fn script_coverage(db: &fontdb::Database) -> Vec<ScriptCoverage> {
    Script::PROBED
        .iter()
        .map(|&(script, sample)| ScriptCoverage {
            script,
            sample,
            font: covering_family(sample, db),
            package: script.package(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latin_stays_in_the_embedded_font() {
        let l = layout("validation accuracy", 14.0).unwrap();
        assert!(
            l.glyphs
                .iter()
                .all(|g| std::ptr::eq(g.face, primary().unwrap()))
        );
        assert_eq!(l.families(), vec![PRIMARY_FAMILY]);
        assert!(l.width > 100.0 && l.width < 200.0, "{}", l.width);
        assert_eq!(css_families("loss", 13.0), "DejaVu Sans, sans-serif");
    }

    #[test]
    fn arabic_is_shaped_right_to_left_by_the_embedded_font() {
        // عقرب: four letters that join. Shaped, each takes its contextual form
        // (a different glyph than the isolated letter), and the first letter
        // (ع) is placed rightmost.
        let word = layout("عقرب", 20.0).unwrap();
        let isolated: Vec<GlyphId> = "عقرب"
            .chars()
            .map(|c| primary().unwrap().glyphs.glyph_id(c))
            .collect();
        assert_eq!(word.glyphs.len(), 4);
        let first_letter = word
            .glyphs
            .iter()
            .max_by(|a, b| a.x.total_cmp(&b.x))
            .unwrap();
        let shaped_ids: Vec<GlyphId> = word.glyphs.iter().map(|g| g.id).collect();
        assert!(
            !isolated.contains(&first_letter.id),
            "ع is in its initial form, not isolated"
        );
        assert_ne!(shaped_ids, isolated, "letters joined");
        // Same glyphs as the initial form of ع that DejaVu Sans has (U+FECB ARABIC LETTER AIN INITIAL FORM).
        assert_eq!(
            first_letter.id,
            primary().unwrap().glyphs.glyph_id('\u{FECB}')
        );
    }

    /// A machine whose only font is DejaVu Sans: 山羊 (goat) has no glyphs,
    /// the warning names both characters and fonts-noto-cjk; the Latin,
    /// Arabic (DejaVu has it) and the space are not named.
    #[test]
    fn characters_no_font_draws_are_named_with_their_package() {
        let mut db = fontdb::Database::new();
        db.load_font_data(dejavu::sans::regular().to_vec());
        let missing = missing_glyphs("goat 山羊 عقرب 🐐 山", &db);
        assert_eq!(missing, vec!['山', '羊', '🐐']);
        let w = missing_glyphs_warning(&missing).unwrap();
        assert!(w.contains("山 羊 (CJK: fonts-noto-cjk)"), "{w}");
        assert!(w.contains("🐐 (emoji: fonts-noto-color-emoji)"), "{w}");
        assert!(
            w.contains("apt install fonts-noto-cjk fonts-noto-color-emoji"),
            "{w}"
        );
        assert!(!w.contains('ع') && !w.contains("goat"), "{w}");
        assert_eq!(missing_glyphs_warning(&[]), None);

        let empty = fontdb::Database::new();
        assert_eq!(missing_glyphs("loss", &empty), Vec::<char>::new());
        let by_script: Vec<(Script, bool)> = script_coverage(&db)
            .iter()
            .map(|c| (c.script, c.font.is_some()))
            .collect();
        assert!(by_script.contains(&(Script::Latin, true)));
        assert!(by_script.contains(&(Script::Cjk, false)));
        assert!(by_script.contains(&(Script::Emoji, false)));
    }

    #[test]
    fn scripts_map_to_the_package_that_covers_them() {
        for (c, script, package) in [
            ('羊', Script::Cjk, "fonts-noto-cjk"),
            ('あ', Script::Cjk, "fonts-noto-cjk"),
            ('한', Script::Cjk, "fonts-noto-cjk"),
            ('ع', Script::Arabic, "fonts-noto-core"),
            ('א', Script::Hebrew, "fonts-noto-core"),
            ('क', Script::Devanagari, "fonts-noto-core"),
            ('🐐', Script::Emoji, "fonts-noto-color-emoji"),
            ('ᚠ', Script::Other, "fonts-noto"),
        ] {
            assert_eq!(
                (Script::of(c), Script::of(c).package()),
                (script, package),
                "{c}"
            );
        }
        for (script, sample) in Script::PROBED {
            assert_eq!(Script::of(sample), script, "{sample}");
        }
    }

    #[test]
    fn css_names_are_quoted_only_when_needed() {
        assert_eq!(css_name("Noto Sans CJK SC"), "Noto Sans CJK SC");
        assert_eq!(css_name("Font 2000"), "'Font 2000'");
    }
}
