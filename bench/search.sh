#!/usr/bin/env bash
# Search methods on real training (built-in trainer, demo data, this machine):
# for each space and seed, the full grid, then every early-stopping method on
# the same 27 configurations, one after the other. Prints, per run: wall and
# CPU seconds, epochs trained, the best validation accuracy, its distance to
# the grid's best (points), and the seconds until a value within 1 point of
# the grid's best was first recorded (from the metrics rows' times).
#
#   bench/search.sh [SPACES] [SEEDS] [PER_CLASS] [WORKERS]
#       SPACES: comma-separated from lr-wd,backbone-lr   (default lr-wd)
#       SEEDS:  comma-separated                          (default 0,1,2)
#       PER_CLASS: training images a class               (default 60)
#       WORKERS: trials at once                          (default 2)
#
# Spaces (resnet from scratch, 32 px, Adam, cosine schedule, hflip, 9 epochs):
#   lr-wd:       resnet18; lr 1e-4 … 0.05 (9, log-spaced) × weight_decay {0, 1e-4, 1e-3}
#   backbone-lr: resnet18/34/50 × lr {5e-4, 1e-3, 2e-3} × weight_decay {0, 1e-4, 1e-3}
# Methods (METHODS="..."): none (the grid), asha, asha-promote, hyperband,
# hyperband-promote, median, auto, and pbt5: population-based training of 5
# configurations drawn from the same space ([random], lr log-uniform over the
# grid's range), interval 1, lr perturbed ×0.8/×1.25 or resampled (p 0.25) —
# at 5 of 27 configurations its cost is about a fifth of the grid's; bohb:
# TPE proposals (27 points, 9 random first) over the same space with Hyperband;
# random5: the same 5 draws as pbt5, trained without stopping (what PBT adds);
# random9, random9-hb, random9-median: 9 draws (the first 5 are random5's)
# trained without stopping, with hyperband, with median stopping; bohb9: TPE
# over 9 points (the 5 random5 draws first) with hyperband; lhs5: 5 points of
# a Latin hypercube over the same ranges (sampler = "lhs"), without stopping.
# KEEP=1 keeps the work folder (database, results) and prints its path.
# CPU seconds (coordinator and workers) are the fairer figure on a shared machine.
# GRID_BEST (a fraction) compares with a grid measured before, without running it.
set -euo pipefail
cd "$(dirname "$0")/.."
spaces=${1:-lr-wd}
seeds=${2:-0,1,2}
per_class=${3:-60}
workers=${4:-2}
methods=${METHODS:-"none asha asha-promote hyperband hyperband-promote median auto pbt5"}
cargo build --release --quiet --workspace --bins
BIN=$PWD/target/release/sweep
W=$(mktemp -d)
if [ -n "${KEEP:-}" ]; then echo "work folder: $W"; else trap 'rm -rf "$W"' EXIT; fi
"$BIN" data demo "$W/data" --per-class "$per_class" --image-size 32 >/dev/null
echo "$(date -u +%F) $(nproc) cores; $per_class training images a class (12 classes), $workers trials at once"
printf '%-12s %4s %-18s %8s %8s %7s %10s %8s %10s\n' space seed method "wall s" "CPU s" epochs "best val" "vs grid" "to 1 pt s"
for space in ${spaces//,/ }; do
  case $space in
    lr-wd) grid='backbone = ["resnet18"]
lr = [0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05]
weight_decay = [0.0, 0.0001, 0.001]'
      lr_range='0.0001, 0.05'
      population='backbone = { choice = ["resnet18"] }' ;;
    backbone-lr) grid='backbone = ["resnet18", "resnet34", "resnet50"]
lr = [0.0005, 0.001, 0.002]
weight_decay = [0.0, 0.0001, 0.001]'
      lr_range='0.0005, 0.002'
      population='backbone = { choice = ["resnet18", "resnet34", "resnet50"] }' ;;
    *) echo "unknown space $space" >&2; exit 2 ;;
  esac
  for seed in ${seeds//,/ }; do
    # GRID_BEST=0.325: compare with a grid measured before (same space, seed,
    # data and workers) instead of the first method run here.
    grid_best=${GRID_BEST:-}
    for method in $methods; do
      case $method in
        none) stop='method = "none"' ;;
        asha) stop='method = "asha"' ;;
        asha-promote) stop='method = "asha"
mode = "promote"' ;;
        hyperband) stop='method = "hyperband"' ;;
        hyperband-promote) stop='method = "hyperband"
mode = "promote"' ;;
        median) stop='method = "median"' ;;
        auto) stop='method = "auto"' ;;
        bohb) stop='method = "hyperband"' ;;
        random5|random9|lhs5) stop='method = "none"' ;;
        random9-hb|bohb9) stop='method = "hyperband"' ;;
        random9-median) stop='method = "median"' ;;
        pbt5) stop="method = \"pbt\"
interval = 1
[stopping.perturb]
lr = { factors = [0.8, 1.25], resample = 0.25, loguniform = [$lr_range] }" ;;
        *) echo "unknown method $method" >&2; exit 2 ;;
      esac
      space_text="[grid]
$grid"
      dims="$population
lr = { loguniform = [$lr_range] }
weight_decay = { choice = [0.0, 0.0001, 0.001] }"
      case $method in
        pbt5|random5) space_text="[random]
samples = 5
$dims" ;;
        lhs5) space_text="[random]
samples = 5
sampler = \"lhs\"
$dims" ;;
        random9|random9-hb|random9-median) space_text="[random]
samples = 9
$dims" ;;
        bohb9) space_text="[random]
samples = 9
sampler = \"tpe\"
startup = 5
$dims" ;;
        bohb) space_text="[random]
samples = 27
sampler = \"tpe\"
startup = 9
$dims" ;;
      esac
      name="$space-$seed-$method"
      # pbt5, random5 and the random9 methods draw the same population (the
      # first 5 of 9 draws are pbt5's): the same sweep name (the draws'
      # seed), each in a database of its own. bohb9's 5 startup draws too.
      sname=$name db="$W/r.db"
      case $method in pbt5|random5|random9*|bohb9|lhs5) sname="$space-$seed-pop5" db="$W/$name.db" ;; esac
      cat > "$W/$name.toml" <<TOML
[sweep]
name = "$sname"
dataset = "$W/data"
seeds = [$seed]
[defaults]
epochs = 9
image_size = 32
batch_size = 32
optimizer = "adam"
schedule = "cosine"
augment = ["hflip"]
head = "original"
$space_text
[resources]
cpu_workers = $workers
[stopping]
min_epochs = 1
reduction = 3
$stop
TOML
      case $method in auto|pbt5) sed -i '/^min_epochs\|^reduction/d' "$W/$name.toml" ;; esac
      start=$(date +%s.%N)
      /usr/bin/time -f "%U %S" -o "$W/$name.time" "$BIN" --db "$db" run "$W/$name.toml" --results "$W/results" --plain >/dev/null 2>"$W/$name.log" || { tail -20 "$W/$name.log"; exit 1; }
      end=$(date +%s.%N)
      read -r user sys <"$W/$name.time"
      q() { sqlite3 "$db" "$1"; }
      sid=$(q "SELECT id FROM sweeps WHERE name = '$sname'")
      epochs=$(q "SELECT count(*) FROM (SELECT DISTINCT m.trial_id, m.epoch FROM metrics m JOIN trials t ON t.id = m.trial_id WHERE t.sweep_id = $sid AND m.split = 'valid' AND m.name = 'accuracy')")
      best=$(q "SELECT max(m.value) FROM metrics m JOIN trials t ON t.id = m.trial_id WHERE t.sweep_id = $sid AND m.split = 'valid' AND m.name = 'accuracy'")
      [ -z "$grid_best" ] && grid_best=$best
      first=$(q "SELECT min(a.started_at) FROM attempts a JOIN trials t ON t.id = a.trial_id WHERE t.sweep_id = $sid")
      reach=$(q "SELECT CASE WHEN min(m.time) IS NULL THEN '-' ELSE printf('%.1f', min(m.time) - $first) END FROM metrics m JOIN trials t ON t.id = m.trial_id WHERE t.sweep_id = $sid AND m.split = 'valid' AND m.name = 'accuracy' AND m.value >= $grid_best - 0.01")
      printf '%-12s %4s %-18s %8.1f %8.1f %7s %9.1f%% %+8.1f %10s\n' "$space" "$seed" "$method" \
        "$(echo "$end - $start" | bc)" "$(echo "$user + $sys" | bc)" "$epochs" \
        "$(echo "$best * 100" | bc -l)" "$(echo "($best - $grid_best) * 100" | bc -l)" "$reach"
    done
  done
done
