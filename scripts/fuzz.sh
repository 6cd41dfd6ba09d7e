#!/usr/bin/env bash
# Runs every fuzz target (fuzz/fuzz_targets) for a fixed time each, from seed corpora
# made here: the files of a small synthetic dataset (shards, indexes, manifest, images)
# and Pico-Banana rows of all three subsets. Needs a nightly toolchain (cargo-fuzz
# builds with sanitizer flags) and installs cargo-fuzz into target/tools/fuzz.
#
#   bash scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#
# Crashes land in fuzz/artifacts/<target>/; each one found is fixed and kept as a test
# in tests/bad_inputs.rs. See docs/fuzzing.md.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(shard_reader index_parser manifest_parser pico_banana_row image_decode)

fuzz=target/tools/fuzz/bin/cargo-fuzz
if [ ! -x "$fuzz" ]; then
  cargo install cargo-fuzz --locked --root target/tools/fuzz
fi
toolchain=+nightly
rustup run nightly rustc --version >/dev/null 2>&1 || {
  # Without a nightly toolchain, let stable accept the sanitizer flags.
  toolchain=""
  export RUSTC_BOOTSTRAP=1
}

# Seeds.
cargo build --quiet --bin editfeed
seeds=fuzz/seeds
if [ ! -d "$seeds" ]; then
  tmp=$(mktemp -d)
  target/debug/editfeed synth --out "$tmp/ds" --samples 6 --scale 0.1 --shard-samples 2 >/dev/null
  mkdir -p "$seeds"/{shard_reader,index_parser,manifest_parser,pico_banana_row,image_decode}
  cp "$tmp"/ds/*.tar.zst "$seeds/shard_reader/"
  cp "$tmp"/ds/*.idx "$seeds/index_parser/"
  cp "$tmp/ds/manifest.json" "$seeds/manifest_parser/"
  # Images, prefixed with the byte that selects the declared format (0 JPEG, 1 PNG).
  mkdir "$tmp/x" && zstd -dcq "$tmp"/ds/sft-000000.tar.zst | tar -x -C "$tmp/x"
  n=0
  for f in "$tmp"/x/*; do
    case "$f" in
      *.jpg) sel='\x00' ;;
      *.png) sel='\x01' ;;
      *) continue ;;
    esac
    { printf "$sel"; cat "$f"; } >"$seeds/image_decode/$n"
    n=$((n + 1))
  done
  # Rows, prefixed with the byte that selects the subset (0 sft, 1 preference, 2 multi-turn).
  printf '\x00{"open_image_input_url":"https://farm1.staticflickr.com/1/2_o.jpg","text":"Make the sky purple","summarized_text":"purple sky","output_image":"images/positive-edit/17.png","edit_type":"Change the overall color tone","local_input_image":"openimages/0001.jpg"}' >"$seeds/pico_banana_row/sft"
  printf '\x01{"open_image_input_url":"https://farm1.staticflickr.com/1/2_o.jpg","text":"Add a hat","summarized_text":"hat","output_image":"images/positive-edit/3.png","rejected_images":["images/negative-edit/3_1.png","images/negative-edit/3_2.png"],"edit_type":"Add a new object to the scene"}' >"$seeds/pico_banana_row/preference"
  printf '\x02{"files":[{"id":"final_image","url":"images/multi-turn/9_0_turn3.png"},{"id":"original_input_image","url":"https://farm1.staticflickr.com/1/2_o.jpg"},{"id":"edit_turn1","url":"images/multi-turn/9_0_turn1.png"},{"id":"edit_turn2","url":"images/multi-turn/9_0_turn2.png"}],"metadata_edit_turn_prompts":["one","two","three"]}' >"$seeds/pico_banana_row/multi_turn"
  rm -rf "$tmp"
fi

export PATH="$PWD/target/tools/fuzz/bin:$PATH"
cd fuzz
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  echo "== $t: ${seconds}s"
  # -rss_limit_mb: a parser that allocates without bound fails the run.
  cargo $toolchain fuzz run "$t" "corpus/$t" "seeds/$t" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 -max_len=4194304 -print_final_stats=1 2>&1 |
    grep -E "^(#[0-9]+ +DONE|stat::|==[0-9]+==|SUMMARY|artifact_prefix|Test unit written)|panicked" || true
  if compgen -G "artifacts/$t/crash-*" >/dev/null || compgen -G "artifacts/$t/oom-*" >/dev/null; then
    echo "!! $t: crashes in fuzz/artifacts/$t"
  fi
done
