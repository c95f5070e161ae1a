//! Loss, accuracy and predictions of a network on a split (validation and
//! test), without gradients. Never changes the model.
use super::*;

pub struct Eval {
    pub loss: f64,
    pub accuracy: f64,
    pub preds: Vec<i64>,
    pub probs: Vec<f64>,
}

/// Loss and accuracy of `net` on `split`, at the trial's image size, batch
/// size and memory format; `keep`: every image's prediction and probability.
pub fn evaluate(
    net: &Net,
    split: &SplitCache,
    cfg: &TrialConfig,
    device: Device,
    keep: bool,
) -> Result<Eval, Failure> {
    let (s, bs) = (cfg.image_size, cfg.batch_size as usize);
    tch::no_grad(|| {
        let n = split.len();
        // Sums kept on the device and read once at the end: a read a batch
        // would make the host wait for the device at every batch.
        let mut loss_sum = Tensor::zeros([], (Kind::Double, device));
        let mut correct_sum = Tensor::zeros([], (Kind::Int64, device));
        let (mut preds, mut probs) = (Vec::new(), Vec::new());
        let idx: Vec<usize> = (0..n).collect();
        let mut staging = Vec::new();
        for chunk in idx.chunks(bs.max(1)) {
            let (host, labels) = host_batch(chunk.len(), s, device, &mut staging, |out| {
                data::eval_batch_into(split, chunk, s, out)
            })
            .map_err(|m| Failure::new(ErrorClass::Data, m.to_string()))?;
            let xs = device_input(&host, device, cfg.channels_last);
            let ys = device_labels(&labels, device);
            let logits = net.forward_t(&xs, false).to_kind(Kind::Float);
            loss_sum +=
                logits.cross_entropy_for_logits(&ys).to_kind(Kind::Double) * chunk.len() as f64;
            let pred = logits.argmax(-1, false);
            correct_sum += pred.eq_tensor(&ys).sum(Kind::Int64);
            if keep {
                probs.push(logits.softmax(-1, Kind::Float).max_dim(-1, false).0);
                preds.push(pred);
            }
        }
        let loss = loss_sum.double_value(&[]);
        let correct = correct_sum.int64_value(&[]);
        let (preds, probs) = if keep && !preds.is_empty() {
            let preds = Vec::<i64>::try_from(Tensor::cat(&preds, 0).to_device(Device::Cpu))
                .unwrap_or_default();
            let probs = Vec::<f64>::try_from(
                Tensor::cat(&probs, 0)
                    .to_kind(Kind::Double)
                    .to_device(Device::Cpu),
            )
            .unwrap_or_default();
            (preds, probs)
        } else {
            (Vec::new(), Vec::new())
        };
        Ok(Eval {
            loss: loss / n.max(1) as f64,
            accuracy: correct as f64 / n.max(1) as f64,
            preds,
            probs,
        })
    })
}
