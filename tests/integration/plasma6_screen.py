#!/usr/bin/python3
"""Screen helpers for plasma6-session.sh: what changed between two
screenshots, where a colour is, what the text says. ImageMagick (convert,
identify) and tesseract do the pixel work; names are absolute paths because
a test PATH may hold stand-ins.

  plasma6_screen.py diff A.png B.png [--region X Y W H] [--pick left|big] [--min N]
      Pixels that differ (>6 % grey) between two same-size screenshots,
      grouped into blobs on a 4-px grid (gaps up to 8 px bridged). Prints
      "x y w h" (absolute) of the leftmost or the biggest blob at least N px
      (default 6) wide and high; nothing when nothing changed.
  plasma6_screen.py count IMG '#rrggbb' X Y W H
      How many pixels of the rectangle have that colour (6 % fuzz).
  plasma6_screen.py words IMG X Y W H
      OCR (tesseract, 3x upscaled, grey, normalised) of the rectangle: one
      line per word, "WORD CX CY" with the word's centre in screen pixels.
  plasma6_screen.py text IMG X Y W H
      The same words on one line.
"""
import subprocess
import sys

CONVERT = '/usr/bin/convert'
IDENTIFY = '/usr/bin/identify'
TESSERACT = '/usr/bin/tesseract'


def crop(region):
    x, y, w, h = region
    return ['-crop', '%dx%d+%d+%d' % (w, h, x, y), '+repage']


def size(img):
    out = subprocess.run([IDENTIFY, '-format', '%w %h', img], check=True,
                         stdout=subprocess.PIPE, text=True).stdout.split()
    return int(out[0]), int(out[1])


def diff(a, b, region, pick, min_px):
    if region is None:
        w, h = size(a)
        region = (0, 0, w, h)
    rx, ry, w, h = region
    step = 4
    gw, gh = (w + step - 1) // step, (h + step - 1) // step
    # ImageMagick 7 applies -crop to every image loaded so far: ( ) groups.
    data = subprocess.run(
        [CONVERT, '(', a] + crop(region) + [')', '(', b] + crop(region) + [')',
         '-compose', 'difference', '-composite', '-colorspace', 'gray', '-threshold', '6%',
         '-filter', 'box', '-resize', '%dx%d!' % (gw, gh), '-threshold', '0',
         '-depth', '8', 'gray:-'], check=True, stdout=subprocess.PIPE).stdout
    on = {(i % gw, i // gw) for i, v in enumerate(data) if v}
    seen, blobs, r = set(), [], 2
    for p in sorted(on):
        if p in seen:
            continue
        stack, pts = [p], []
        seen.add(p)
        while stack:
            q = stack.pop()
            pts.append(q)
            for dx in range(-r, r + 1):
                for dy in range(-r, r + 1):
                    n = (q[0] + dx, q[1] + dy)
                    if n in on and n not in seen:
                        seen.add(n)
                        stack.append(n)
        xs = [q[0] for q in pts]
        ys = [q[1] for q in pts]
        bx, by = min(xs) * step, min(ys) * step
        bw = min((max(xs) + 1) * step, w) - bx
        bh = min((max(ys) + 1) * step, h) - by
        if bw >= min_px and bh >= min_px:
            blobs.append((bx + rx, by + ry, bw, bh))
    if not blobs:
        return None
    if pick == 'big':
        return max(blobs, key=lambda t: t[2] * t[3])
    return min(blobs, key=lambda t: t[0])


def count(img, colour, region):
    out = subprocess.run([CONVERT, img] + crop(region) +
                         ['-fuzz', '6%', '-fill', 'black', '+opaque', colour, '-fill', 'white',
                          '-opaque', colour, '-format', '%[fx:round(mean*w*h)]', 'info:'],
                         check=True, stdout=subprocess.PIPE, text=True).stdout
    return int(out.strip() or 0)


def words(img, region):
    png = subprocess.run([CONVERT, img] + crop(region) +
                         ['-resize', '300%', '-colorspace', 'gray', '-normalize', 'png:-'],
                         check=True, stdout=subprocess.PIPE).stdout
    out = subprocess.run([TESSERACT, '-', '-', '--psm', '11', 'tsv'], input=png,
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, check=True).stdout
    found = []
    for line in out.decode('utf-8', 'replace').splitlines()[1:]:
        f = line.split('\t')
        if len(f) == 12 and f[11].strip():
            left, top, ww, hh = (int(v) for v in f[6:10])
            found.append((f[11].strip(), region[0] + (left + ww / 2) / 3, region[1] + (top + hh / 2) / 3))
    return found


def main(argv):
    cmd = argv[1]
    if cmd == 'diff':
        a, b = argv[2], argv[3]
        region, pick, min_px = None, 'left', 6
        rest = argv[4:]
        while rest:
            if rest[0] == '--region':
                region = tuple(int(v) for v in rest[1:5])
                rest = rest[5:]
            elif rest[0] == '--pick':
                pick = rest[1]
                rest = rest[2:]
            elif rest[0] == '--min':
                min_px = int(rest[1])
                rest = rest[2:]
            else:
                sys.exit('diff: unknown argument %s' % rest[0])
        blob = diff(a, b, region, pick, min_px)
        if blob:
            print('%d %d %d %d' % blob)
    elif cmd == 'count':
        print(count(argv[2], argv[3], tuple(int(v) for v in argv[4:8])))
    elif cmd in ('words', 'text'):
        found = words(argv[2], tuple(int(v) for v in argv[3:7]))
        if cmd == 'text':
            print(' '.join(w for w, _, _ in found))
        else:
            for w, x, y in found:
                print('%s %d %d' % (w, x, y))
    else:
        sys.exit(__doc__)


if __name__ == '__main__':
    main(sys.argv)
