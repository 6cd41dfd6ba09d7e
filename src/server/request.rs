//! Validates a `StreamRequest` and turns it into the producer's parameters. Every
//! refusal names the field at fault.

use std::sync::Arc;

use super::registry::ServedDataset;
use super::status::RequestError;
use crate::config::ServeConfig;
use crate::dataset::Subset;
use crate::pipeline::augment::{AugmentSpec, Fit, FlipPolicy, Jitter};
use crate::pipeline::budget::stream_base;
use crate::pipeline::collate::estimate_bytes;
use crate::pipeline::prepare::{OutputKind, PrepareCtx};
use crate::pipeline::stream::StreamParams;
use crate::plan::{Cursor, Mode, Plan};
use crate::transport::convert::spec_from_wire;
use crate::transport::proto::v1 as pb;
use crate::transport::shared_memory::SharedMemory;

fn invalid(field: &'static str, why: impl Into<String>) -> RequestError {
    RequestError::Invalid {
        field,
        why: why.into(),
    }
}

/// The augmentation a request asks for, over the defaults.
pub fn augment_from_wire(
    a: Option<&pb::Augment>,
    config: &ServeConfig,
) -> Result<AugmentSpec, RequestError> {
    let mut spec = AugmentSpec {
        max_pixels: config.max_decode_pixels,
        ..AugmentSpec::default()
    };
    let Some(a) = a else { return Ok(spec) };
    if let Some(v) = a.crop {
        spec.crop = v;
    }
    if let Some(v) = a.crop_scale_min {
        spec.crop_scale[0] = v;
    }
    if let Some(v) = a.crop_scale_max {
        spec.crop_scale[1] = v;
    }
    if let Some(v) = a.crop_ratio_min {
        spec.crop_ratio[0] = v;
    }
    if let Some(v) = a.crop_ratio_max {
        spec.crop_ratio[1] = v;
    }
    if let Some(v) = a.hflip {
        spec.hflip = v;
    }
    if let Some(v) = a.jpeg_dct_scaling {
        spec.jpeg_dct_scaling = v;
    }
    spec.flip_policy = match pb::FlipPolicy::try_from(a.flip_policy) {
        Ok(pb::FlipPolicy::Unspecified | pb::FlipPolicy::Skip) => FlipPolicy::Skip,
        Ok(pb::FlipPolicy::Swap) => FlipPolicy::Swap,
        Ok(pb::FlipPolicy::Ignore) => FlipPolicy::Ignore,
        Err(_) => {
            return Err(invalid(
                "augment.flip_policy",
                format!("{} is not a flip policy", a.flip_policy),
            ))
        }
    };
    if let Some(j) = &a.jitter {
        if j.brightness != 0.0 || j.contrast != 0.0 || j.saturation != 0.0 {
            spec.jitter = Some(Jitter {
                brightness: j.brightness,
                contrast: j.contrast,
                saturation: j.saturation,
            });
        }
    }
    spec.validate()
        .map_err(|e| invalid("augment", e.to_string()))?;
    Ok(spec)
}

/// The transform of an evaluation stream: no random crop, flip or jitter. Only the
/// decode switch may be set; any augmentation field is refused by name.
pub fn eval_augment(
    a: Option<&pb::Augment>,
    config: &ServeConfig,
) -> Result<AugmentSpec, RequestError> {
    let mut spec = AugmentSpec {
        max_pixels: config.max_decode_pixels,
        crop: false,
        hflip: 0.0,
        ..AugmentSpec::default()
    };
    let Some(a) = a else { return Ok(spec) };
    let set = [
        ("augment.crop", a.crop.is_some()),
        ("augment.crop_scale_min", a.crop_scale_min.is_some()),
        ("augment.crop_scale_max", a.crop_scale_max.is_some()),
        ("augment.crop_ratio_min", a.crop_ratio_min.is_some()),
        ("augment.crop_ratio_max", a.crop_ratio_max.is_some()),
        ("augment.hflip", a.hflip.is_some()),
        ("augment.flip_policy", a.flip_policy != 0),
        ("augment.jitter", a.jitter.is_some()),
    ];
    if let Some((field, _)) = set.iter().find(|(_, set)| *set) {
        return Err(invalid(
            field,
            "is set, but an eval stream is not augmented (spec.mode = eval); choose the resize with output.fit",
        ));
    }
    if let Some(v) = a.jpeg_dct_scaling {
        spec.jpeg_dct_scaling = v;
    }
    Ok(spec)
}

/// How whole images meet the output: the request's `output.fit`, defaulting to a
/// stretch in training and a centre crop in evaluation. A fit other than stretch needs
/// the random crop off.
fn fit_from_wire(fit: i32, eval: bool, crop: bool) -> Result<Fit, RequestError> {
    let fit = match pb::Fit::try_from(fit) {
        Ok(pb::Fit::Unspecified) if eval => Fit::CenterCrop,
        Ok(pb::Fit::Unspecified | pb::Fit::Stretch) => Fit::Stretch,
        Ok(pb::Fit::CenterCrop) => Fit::CenterCrop,
        Ok(pb::Fit::Letterbox) => Fit::Letterbox,
        Err(_) => return Err(invalid("output.fit", format!("{fit} is not a fit"))),
    };
    if crop && fit != Fit::Stretch {
        return Err(invalid(
            "output.fit",
            format!("{fit:?} fits a whole image, but augment.crop is on; set augment.crop = false"),
        ));
    }
    Ok(fit)
}

/// The fingerprint extra: every setting besides the plan spec that changes batch bytes.
/// With DCT scaling on, JPEG pixels also depend on the build's DCT-domain decoder: a
/// libjpeg-turbo build names it, so that a cursor is refused by a daemon of the other
/// build. Encoded output decodes nothing, so the decode switch (whose default depends on
/// the build) is left out of it.
fn output_fingerprint(
    aug: &AugmentSpec,
    size: (u32, u32),
    buckets: &[(u32, u32)],
    kind: OutputKind,
) -> Vec<u8> {
    let mut aug = aug.clone();
    if kind == OutputKind::Encoded {
        aug.jpeg_dct_scaling = false;
    }
    let mut extra = format!("{aug:?}|{size:?}|{buckets:?}|{kind:?}");
    if cfg!(feature = "turbojpeg") && aug.jpeg_dct_scaling {
        extra.push('|');
        extra.push_str(crate::codec::JPEG_DCT_DECODER);
    }
    extra.into_bytes()
}

/// The first step and the stride of a strided request (`step_stride`, `step_offset`:
/// e.g. a loader worker's share of the rank), from the cursor's step `cursor_step`.
fn strided_start(req: &pb::StreamRequest, cursor_step: u64) -> (u64, u64) {
    (
        cursor_step.saturating_add(req.step_offset as u64),
        req.step_stride.max(1) as u64,
    )
}

/// Validates a request against the registry entry and the limits; returns what the
/// stream's producer needs.
pub fn validate(
    req: &pb::StreamRequest,
    dataset: Arc<ServedDataset>,
    config: &ServeConfig,
    shared: Option<&Arc<SharedMemory>>,
) -> Result<StreamParams, RequestError> {
    let wire_spec = req
        .spec
        .as_ref()
        .ok_or_else(|| invalid("spec", "is required"))?;
    if wire_spec.global_batch == 0 {
        return Err(invalid("spec.global_batch", "must be positive"));
    }
    if wire_spec.global_batch > config.max_global_batch {
        return Err(invalid(
            "spec.global_batch",
            format!(
                "{} is over the limit {}",
                wire_spec.global_batch, config.max_global_batch
            ),
        ));
    }
    if req.world_size == 0 {
        return Err(invalid("world_size", "must be positive"));
    }
    if wire_spec.global_batch % req.world_size != 0 {
        return Err(invalid(
            "world_size",
            format!(
                "{} does not divide spec.global_batch {}",
                req.world_size, wire_spec.global_batch
            ),
        ));
    }
    if req.rank >= req.world_size {
        return Err(invalid(
            "rank",
            format!(
                "{} is out of range for world_size {}",
                req.rank, req.world_size
            ),
        ));
    }
    let output = req.output.clone().unwrap_or_default();
    let kind = match pb::OutputFormat::try_from(output.format) {
        Ok(pb::OutputFormat::Unspecified | pb::OutputFormat::Uint8Hwc) => OutputKind::Pixels,
        Ok(pb::OutputFormat::Encoded) => OutputKind::Encoded,
        Err(_) => {
            return Err(invalid(
                "output.format",
                format!("{} is not an output format", output.format),
            ))
        }
    };
    let side = |field, v: u32| {
        if v == 0 || v > config.max_image_side {
            Err(invalid(
                field,
                format!("{v} must be in 1..={}", config.max_image_side),
            ))
        } else {
            Ok(v)
        }
    };
    let (size, buckets) = if kind == OutputKind::Encoded {
        ((0, 0), vec![])
    } else {
        let w = side("output.width", output.width)?;
        let h = if output.height == 0 {
            w
        } else {
            side("output.height", output.height)?
        };
        let mut buckets = Vec::new();
        for b in &output.buckets {
            buckets.push((
                side("output.buckets.width", b.width)?,
                side("output.buckets.height", b.height)?,
            ));
        }
        ((w, h), buckets)
    };
    let per_rank = (wire_spec.global_batch / req.world_size) as u64;
    let largest = buckets
        .iter()
        .copied()
        .chain([size])
        .max_by_key(|(w, h)| *w as u64 * *h as u64)
        .unwrap_or(size);
    let spec = spec_from_wire(wire_spec).map_err(crate::plan::PlanError::from)?;
    let eval = spec.mode == Mode::Eval;
    let mut augment = if eval {
        eval_augment(req.augment.as_ref(), config)?
    } else {
        augment_from_wire(req.augment.as_ref(), config)?
    };
    augment.fit = fit_from_wire(output.fit, eval, augment.crop)?;
    let narrowed = crate::plan::narrow::for_stream(&dataset.dataset, &dataset.plan_input, &spec)?;
    let input = narrowed.as_ref().unwrap_or(&dataset.plan_input);
    let plan = Plan::new(input, &spec)?
        .with_fingerprint_extra(&output_fingerprint(&augment, size, &buckets, kind));
    // A world-size or rank problem surfaces now, not mid-stream.
    match plan.rank_batch(0, req.rank, req.world_size) {
        Ok(_) | Err(crate::plan::PlanError::EndOfStream { .. }) => {}
        Err(other) => return Err(other.into()),
    }
    let start_step = if req.cursor.is_empty() {
        0
    } else {
        plan.resume(&Cursor::decode(&req.cursor)?)?
    };
    let (start_step, stride) = strided_start(req, start_step);
    let end = plan.end_step();
    let end_step = match (end, req.max_batches) {
        (e, 0) => e,
        (Some(e), n) => Some(e.min(start_step.saturating_add(n.saturating_mul(stride)))),
        (None, n) => Some(start_step.saturating_add(n.saturating_mul(stride))),
    };
    let plan = Arc::new(plan);
    let mut ctx = PrepareCtx {
        dataset: dataset.dataset.clone(),
        seed: spec.seed,
        augment,
        kind,
        read_ahead: None,
        multi_turn_steps: spec.multi_turn == crate::plan::MultiTurnView::Steps,
        replace_failed: !eval,
    };
    let largest_batch =
        check_batch_bytes(&plan, &ctx, start_step, end_step, per_rank, largest, config)?;
    ctx.start_read_ahead(
        &plan,
        req.rank,
        req.world_size,
        start_step,
        stride,
        end_step,
        config.prefetch_batches,
    );
    let params = StreamParams {
        ctx,
        plan,
        rank: req.rank,
        world_size: req.world_size,
        start_step,
        step_stride: stride,
        end_step,
        size,
        buckets,
        prefetch_batches: config.prefetch_batches,
        largest_batch,
        shared: match shared {
            // Files for the batches in preparation, one being sent and a few the
            // client has received and not given back yet.
            Some(s) => s
                .accept(&req.shm_probe, config.prefetch_batches + 4)
                .map_err(|e| invalid("shm_probe", e.to_string()))?,
            None => None,
        },
    };
    Ok(params)
}

/// Refuses the request if a batch of a subset the stream reaches (between its first
/// step and its end) would pass a limit for one rank: `max_batch_bytes`, or, for the
/// largest, with the stream's base charge ([`stream_base`]), the daemon's whole
/// `max_inflight_bytes`, so that the stream could never be admitted. Sft has 2 images
/// per sample, preference 3, multi-turn the source and the dataset's longest chain.
/// Names the earliest such step, and its curriculum phase. Returns the largest batch's
/// bytes.
fn check_batch_bytes(
    plan: &Plan,
    ctx: &PrepareCtx,
    start_step: u64,
    end_step: Option<u64>,
    per_rank: u64,
    largest: (u32, u32),
    config: &ServeConfig,
) -> Result<u64, RequestError> {
    let reached: Vec<(u64, Subset, u64)> = Subset::ALL
        .into_iter()
        .filter_map(|subset| {
            let step = plan.first_step_of(subset, start_step, end_step)?;
            Some((
                step,
                subset,
                estimate_bytes(ctx.slots(subset), per_rank, largest),
            ))
        })
        .collect();
    let earliest = |over: &dyn Fn(u64) -> bool| {
        reached
            .iter()
            .filter(|(_, _, bytes)| over(*bytes))
            .min_by_key(|(step, _, _)| *step)
            .copied()
    };
    let phase = |step: u64| {
        plan.spec()
            .curriculum
            .iter()
            .position(|p| p.until_step.is_none_or(|end| step < end))
            .map_or(String::new(), |i| format!(", curriculum[{i}]"))
    };
    if let Some((step, subset, bytes)) = earliest(&|b| b > config.max_batch_bytes) {
        return Err(RequestError::BatchTooLarge {
            subset,
            step,
            phase: phase(step),
            bytes,
            limit: config.max_batch_bytes,
        });
    }
    // The largest batch sizes the stream's base charge; the first step it comes at is
    // the one named.
    let largest = reached
        .iter()
        .max_by_key(|(step, _, bytes)| (*bytes, std::cmp::Reverse(*step)))
        .copied();
    let largest_batch = largest.map_or(0, |(_, _, b)| b);
    if let Some((step, subset, bytes)) = largest {
        if stream_base(bytes) > config.max_inflight_bytes {
            return Err(RequestError::OverBudget {
                subset,
                step,
                phase: phase(step),
                bytes,
                need: stream_base(bytes),
                limit: config.max_inflight_bytes,
            });
        }
    }
    Ok(largest_batch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_strided_request_starts_at_its_offset_from_the_cursor() {
        let req = |step_stride, step_offset| pb::StreamRequest {
            step_stride,
            step_offset,
            ..Default::default()
        };
        assert_eq!(strided_start(&req(0, 0), 7), (7, 1));
        assert_eq!(strided_start(&req(1, 0), 7), (7, 1));
        assert_eq!(strided_start(&req(4, 3), 7), (10, 4));
        assert_eq!(strided_start(&req(2, 5), 0), (5, 2));
        assert_eq!(strided_start(&req(2, 5), u64::MAX - 1), (u64::MAX, 2));
    }

    #[test]
    fn the_dct_decoder_is_in_the_fingerprint_only_when_it_changes_the_bytes() {
        let fp = |jpeg_dct_scaling, kind| {
            let aug = AugmentSpec {
                jpeg_dct_scaling,
                ..AugmentSpec::default()
            };
            String::from_utf8(output_fingerprint(&aug, (256, 256), &[], kind)).unwrap()
        };
        let turbo = "|libjpeg-turbo";
        let on = fp(true, OutputKind::Pixels);
        assert_eq!(on.ends_with(turbo), cfg!(feature = "turbojpeg"), "{on}");
        assert!(!fp(false, OutputKind::Pixels).contains(turbo));
        assert_ne!(on, fp(false, OutputKind::Pixels));
        assert_eq!(
            fp(true, OutputKind::Encoded),
            fp(false, OutputKind::Encoded)
        );
    }
}
