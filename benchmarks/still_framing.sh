#!/bin/sh
# Framing bytes of one picture per codec, in the still form (what `onedc-media encode`
# writes for one picture) and the stream form (--stream-form): file bytes minus the
# codec's payload, as `onedc-media info` counts them.
#
#   sh benchmarks/still_framing.sh PHOTO [CODEC:QUALITY | CODEC ...]
#   sh benchmarks/still_framing.sh tests/data/coffee.jpg onedc:1 onedc:3 jpeg:40 webp:50 png avif:30 hevc-intra:30
#
# PHOTO is resized to 768x512 first. Runs in a temporary folder; needs onedc-media on PATH.
set -e
photo=$(realpath "$1"); shift
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT; cd "$work"
python -c "import cv2; cv2.imwrite('photo.png', cv2.resize(cv2.imread('$photo'), (768, 512), interpolation=cv2.INTER_AREA))"
for spec in "$@"; do
  codec=${spec%:*}; q=${spec#*:}; qopt="-q $q"; [ "$q" = "$codec" ] && qopt="" && q="-"
  for form in still stream; do
    flag=""; [ $form = stream ] && flag="--stream-form"
    onedc-media encode photo.png -c "$codec" $qopt -o "$codec-$form.odc" $flag --no-progress > /dev/null
    onedc-media info --json "$codec-$form.odc" | python -c "import json, sys; r = json.load(sys.stdin); \
print(f\"{sys.argv[1]:11s} -q {sys.argv[2]:3s} {r['form']:6s} file {r['file_bytes']:6d} payload {r['payload_bytes']:6d} framing {r['framing_bytes']:4d}\")" "$codec" "$q"
  done
done
