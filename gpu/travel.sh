#!/usr/bin/env bash
# Keep committed paths a device call does not need from travelling with it (the device tool sends tracked and
# untracked-not-ignored files, 64 MiB at most, and main holds more: two training runs of ~20 MB each, the shipped
# world's 21 MB).
#
#   bash gpu/travel.sh leave PATH...   # PATHs stay in the working tree but leave git's index and are ignored
#   bash gpu/travel.sh back            # the index and the ignore list as before (do this before any commit)
#   bash gpu/travel.sh size            # MiB that would travel now (carried paths such as .whl not counted)
#
# What each call needs (training/README.md): a GAN chunk leaves training/encoder_faces64v2; an encoder chunk
# leaves ganinv/assets/faces64 (it reads the GAN run's G_ema and classifier, never the shipped world); issue 17's
# StyleGAN3 tests with .whl carried leave both training runs.
#
# Left paths are index removals that are not committed: `back` puts them back with `git reset`. A commit made in
# between would delete them from main, so `leave` refuses when something is left already and `back` checks that
# HEAD still has them.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
exclude=$(git rev-parse --git-path info/exclude)
state=$(git rev-parse --git-path gpu-travel-left)  # the paths left behind, one per line
mkdir -p "$(dirname "$exclude")" && touch "$exclude" "$state"

size() {
    git ls-files -z --cached --others --exclude-standard | xargs -0 -r stat -c %s 2>/dev/null \
        | awk '{s += $1} END {printf "%.1f MiB travel (limit 64)\n", s / 1048576}'
}

case "${1:-}" in
leave)
    shift
    [[ $# -gt 0 ]] || { echo "name the paths to leave behind" >&2; exit 2; }
    if [[ -s "$state" ]]; then
        echo "paths are left already ($(tr '\n' ' ' < "$state")): run 'bash gpu/travel.sh back' first" >&2
        exit 2
    fi
    for path in "$@"; do
        path=${path%/}
        [[ -e "$path" ]] || { echo "$path: no such path in $(pwd)" >&2; exit 2; }
        git rm -r -q --cached -- "$path"
        echo "$path" >> "$state"
        echo "/$path" >> "$exclude"  # git reads no comments after a pattern: the line is the path alone
    done
    size
    ;;
back)
    mapfile -t left < "$state"
    [[ ${#left[@]} -gt 0 ]] || { echo "nothing was left behind"; exit 0; }
    for path in "${left[@]}"; do
        grep -vxF "/$path" "$exclude" > "$exclude.tmp" || true
        mv "$exclude.tmp" "$exclude"
    done
    : > "$state"
    git reset -q -- "${left[@]}"
    for path in "${left[@]}"; do
        [[ -n "$(git ls-files -- "$path" | head -1)" ]] || {
            echo "$path is not in HEAD: a commit made while it was left behind deleted it; restore it from the" \
                 "commit before (git checkout HEAD~1 -- $path) and commit" >&2; exit 1; }
    done
    echo "back: ${left[*]}"
    size
    ;;
size) size ;;
*) echo "usage: bash gpu/travel.sh leave PATH... | back | size" >&2; exit 2 ;;
esac
