//! The PNG backend: plotters' bitmap backend with its own text rasteriser.
//!
//! plotters 0.3.7's `ab_glyph` text path drops each glyph's left side bearing
//! and truncates pen positions, so PNG text comes out unevenly spaced
//! ("validati on"). This wrapper delegates all drawing to `BitMapBackend`
//! except text, which it lays out with `ab_glyph` directly: kerning,
//! sub-pixel pen positions, glyph bounds, anti-aliased coverage, the same
//! anchors and 90° rotations as plotters. Text sizes match plotters'
//! measurements (`estimate_text_size`), so layouts computed from them hold.
use ab_glyph::{Font, FontRef, PxScale, ScaleFont};
use plotters::prelude::*;
use plotters_backend::text_anchor::{HPos, VPos};
use plotters_backend::{BackendColor, BackendCoord, BackendStyle, BackendTextStyle, DrawingErrorKind};
use std::sync::OnceLock;

fn regular() -> Option<&'static FontRef<'static>> {
    static FONT: OnceLock<Option<FontRef<'static>>> = OnceLock::new();
    FONT.get_or_init(|| FontRef::try_from_slice(dejavu::sans::regular()).ok()).as_ref()
}

pub struct Raster<'a>(pub BitMapBackend<'a>);

type BitmapError<'a> = <BitMapBackend<'a> as DrawingBackend>::ErrorType;

impl<'a> DrawingBackend for Raster<'a> {
    type ErrorType = BitmapError<'a>;

    fn get_size(&self) -> (u32, u32) {
        self.0.get_size()
    }
    fn ensure_prepared(&mut self) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.0.ensure_prepared()
    }
    fn present(&mut self) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.0.present()
    }
    fn draw_pixel(&mut self, point: BackendCoord, color: BackendColor) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.0.draw_pixel(point, color)
    }
    fn draw_line<S: BackendStyle>(&mut self, from: BackendCoord, to: BackendCoord, style: &S) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.0.draw_line(from, to, style)
    }
    fn draw_rect<S: BackendStyle>(&mut self, ul: BackendCoord, br: BackendCoord, style: &S, fill: bool) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.0.draw_rect(ul, br, style, fill)
    }
    fn blit_bitmap(&mut self, pos: BackendCoord, size: (u32, u32), src: &[u8]) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.0.blit_bitmap(pos, size, src)
    }

    fn draw_text<S: BackendTextStyle>(&mut self, text: &str, style: &S, pos: BackendCoord) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        let color = style.color();
        if color.alpha == 0.0 || text.is_empty() {
            return Ok(());
        }
        let Some(font) = regular() else {
            return self.0.draw_text(text, style, pos);
        };
        let font = font.as_scaled(PxScale::from(style.size() as f32));
        let mut pen = 0f32;
        let mut prev = None;
        let mut glyphs = Vec::with_capacity(text.len());
        for c in text.chars() {
            let id = font.glyph_id(c);
            if let Some(p) = prev {
                pen += font.kern(p, id);
            }
            glyphs.push((id, pen));
            pen += font.h_advance(id);
            prev = Some(id);
        }
        let (ascent, descent) = (font.ascent(), font.descent());
        let dx = match style.anchor().h_pos {
            HPos::Left => 0.0,
            HPos::Center => -pen / 2.0,
            HPos::Right => -pen,
        };
        // Offset from the anchor to the baseline, y down.
        let baseline = match style.anchor().v_pos {
            VPos::Top => ascent,
            VPos::Center => (ascent + descent) / 2.0,
            VPos::Bottom => descent,
        };
        let trans = style.transform();
        let mut result = Ok(());
        for (id, x) in glyphs {
            let glyph = id.with_scale_and_position(font.scale(), ab_glyph::point(x + dx, baseline));
            let Some(outline) = font.outline_glyph(glyph) else { continue };
            let b = outline.px_bounds();
            let (bx, by) = (b.min.x as i32, b.min.y as i32);
            outline.draw(|gx, gy, coverage| {
                if coverage <= 0.0 || result.is_err() {
                    return;
                }
                let (tx, ty) = trans.transform(bx + gx as i32, by + gy as i32);
                let c = BackendColor { alpha: color.alpha * coverage.min(1.0) as f64, rgb: color.rgb };
                result = self.0.draw_pixel((pos.0 + tx, pos.1 + ty), c);
            });
            std::mem::replace(&mut result, Ok(()))?;
        }
        Ok(())
    }
}
