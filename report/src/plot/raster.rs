//! The chart backends: plotters' bitmap (PNG) and SVG backends with this
//! crate's own text handling (`fonts`), so that text in any script is measured,
//! drawn and named the same way in both.
//!
//! PNG (`Raster`): plotters 0.3.7's `ab_glyph` text path drops each glyph's
//! left side bearing and truncates pen positions, so PNG text came out
//! unevenly spaced ("validati on"), and it knows one font only. This wrapper
//! delegates all drawing to `BitMapBackend` except text, which `fonts` lays
//! out (bidi, per-character font fallback, shaping) and rasterises:
//! sub-pixel pen positions, glyph bounds, anti-aliased coverage, colour emoji
//! bitmaps, the same anchors and 90° rotations as plotters.
//!
//! SVG (`Vector`): plotters' SVG backend, except that each `<text>` names the
//! font families that draw it (`DejaVu Sans`, then the system families that
//! have what DejaVu Sans lacks, then `sans-serif`), so a viewer picks fonts
//! that have the glyphs.
//!
//! Both measure text with `fonts` (`estimate_text_size`), so layouts computed
//! from measurements hold for any script.
use super::fonts;
use plotters::prelude::*;
use plotters_backend::text_anchor::{HPos, VPos};
use plotters_backend::{
    BackendColor, BackendCoord, BackendStyle, BackendTextStyle, DrawingErrorKind, FontFamily,
    FontStyle, FontTransform,
};

/// The drawing methods both wrappers pass to the plotters backend they wrap
/// (`self.0`) unchanged; only text is handled here.
macro_rules! delegate_drawing {
    () => {
        fn get_size(&self) -> (u32, u32) {
            self.0.get_size()
        }
        fn ensure_prepared(&mut self) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
            self.0.ensure_prepared()
        }
        fn present(&mut self) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
            self.0.present()
        }
        fn draw_pixel(
            &mut self,
            point: BackendCoord,
            color: BackendColor,
        ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
            self.0.draw_pixel(point, color)
        }
        fn draw_line<S: BackendStyle>(
            &mut self,
            from: BackendCoord,
            to: BackendCoord,
            style: &S,
        ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
            self.0.draw_line(from, to, style)
        }
        fn draw_rect<S: BackendStyle>(
            &mut self,
            ul: BackendCoord,
            br: BackendCoord,
            style: &S,
            fill: bool,
        ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
            self.0.draw_rect(ul, br, style, fill)
        }
    };
}

pub struct Raster<'a>(pub BitMapBackend<'a>);

type BitmapError<'a> = <BitMapBackend<'a> as DrawingBackend>::ErrorType;

impl<'a> DrawingBackend for Raster<'a> {
    type ErrorType = BitmapError<'a>;

    delegate_drawing!();
    fn blit_bitmap(
        &mut self,
        pos: BackendCoord,
        size: (u32, u32),
        src: &[u8],
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.0.blit_bitmap(pos, size, src)
    }

    fn estimate_text_size<S: BackendTextStyle>(
        &self,
        text: &str,
        style: &S,
    ) -> Result<(u32, u32), DrawingErrorKind<Self::ErrorType>> {
        Ok(fonts::text_size(text, style.size()))
    }

    fn draw_text<S: BackendTextStyle>(
        &mut self,
        text: &str,
        style: &S,
        pos: BackendCoord,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        let color = style.color();
        if color.alpha == 0.0 || text.is_empty() {
            return Ok(());
        }
        let Some(line) = fonts::layout(text, style.size() as f32) else {
            return self.0.draw_text(text, style, pos);
        };
        let dx = match style.anchor().h_pos {
            HPos::Left => 0.0,
            HPos::Center => -line.width / 2.0,
            HPos::Right => -line.width,
        };
        // Offset from the anchor to the baseline, y down.
        let baseline = match style.anchor().v_pos {
            VPos::Top => line.ascent,
            VPos::Center => (line.ascent + line.descent) / 2.0,
            VPos::Bottom => line.descent,
        };
        let trans = style.transform();
        let mut result = Ok(());
        for g in &line.glyphs {
            fonts::rasterize(
                g,
                line.em_px,
                (g.x + dx, baseline + g.y),
                |x, y, rgb, alpha| {
                    if result.is_err() {
                        return;
                    }
                    let (tx, ty) = trans.transform(x, y);
                    let c = BackendColor {
                        alpha: color.alpha * alpha as f64,
                        rgb: rgb.map(|[r, g, b]| (r, g, b)).unwrap_or(color.rgb),
                    };
                    result = self.0.draw_pixel((pos.0 + tx, pos.1 + ty), c);
                },
            );
            std::mem::replace(&mut result, Ok(()))?;
        }
        Ok(())
    }
}

pub struct Vector<'a>(pub SVGBackend<'a>);

type SvgError<'a> = <SVGBackend<'a> as DrawingBackend>::ErrorType;

/// A text style that names other font families and is otherwise `S`.
struct Named<'s, S> {
    inner: &'s S,
    families: String,
}

impl<S: BackendTextStyle> BackendTextStyle for Named<'_, S> {
    type FontError = S::FontError;
    fn color(&self) -> BackendColor {
        self.inner.color()
    }
    fn size(&self) -> f64 {
        self.inner.size()
    }
    fn transform(&self) -> FontTransform {
        self.inner.transform()
    }
    fn style(&self) -> FontStyle {
        self.inner.style()
    }
    fn anchor(&self) -> plotters_backend::text_anchor::Pos {
        self.inner.anchor()
    }
    fn family(&self) -> FontFamily<'_> {
        FontFamily::Name(&self.families)
    }
    fn layout_box(&self, text: &str) -> Result<((i32, i32), (i32, i32)), Self::FontError> {
        self.inner.layout_box(text)
    }
    fn draw<E, F: FnMut(i32, i32, BackendColor) -> Result<(), E>>(
        &self,
        text: &str,
        pos: BackendCoord,
        draw: F,
    ) -> Result<Result<(), E>, Self::FontError> {
        self.inner.draw(text, pos, draw)
    }
}

impl<'a> DrawingBackend for Vector<'a> {
    type ErrorType = SvgError<'a>;

    delegate_drawing!();
    fn draw_path<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        path: I,
        style: &S,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.0.draw_path(path, style)
    }
    fn draw_circle<S: BackendStyle>(
        &mut self,
        center: BackendCoord,
        radius: u32,
        style: &S,
        fill: bool,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.0.draw_circle(center, radius, style, fill)
    }
    fn fill_polygon<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        vert: I,
        style: &S,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.0.fill_polygon(vert, style)
    }
    fn blit_bitmap(
        &mut self,
        pos: BackendCoord,
        size: (u32, u32),
        src: &[u8],
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.0.blit_bitmap(pos, size, src)
    }

    fn estimate_text_size<S: BackendTextStyle>(
        &self,
        text: &str,
        style: &S,
    ) -> Result<(u32, u32), DrawingErrorKind<Self::ErrorType>> {
        Ok(fonts::text_size(text, style.size()))
    }

    fn draw_text<S: BackendTextStyle>(
        &mut self,
        text: &str,
        style: &S,
        pos: BackendCoord,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        let named = Named {
            inner: style,
            families: fonts::css_families(text, style.size()),
        };
        self.0.draw_text(text, &named, pos)
    }
}
