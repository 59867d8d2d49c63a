"""Set (a) of the OCR benchmark (issue 15 [H]): English and Chinese words rendered onto the coco128 photos.

    python benchmarks/ocr_textset.py OUT_DIR [--images N] [--seed 15]

Deterministic: the same seed, photos and fonts give byte-identical JPEGs and ground truth (every random
choice comes from a ``random.Random`` seeded with the seed and the photo's name, so ``--images 32`` is a
prefix of ``--images 128``). Per photo (sorted names of ../shared/data/coco128/images), 1-4 text items:

* text: a sign / receipt / menu style English word or short phrase (as written, UPPER or Title case) or a
  Chinese word (simplified), from the lists below;
* font: DejaVu Sans / Sans Bold / Serif / Sans Condensed Bold or Noto Sans CJK SC for English, Noto Sans /
  Serif CJK SC (Regular or Bold) for Chinese; size 12-96 px (smaller when the text would not fit);
* colour: a random colour whose luminance differs from the mean luminance under the item by >= 110/255;
* geometry: rotated by -20..20 degrees, each corner moved by up to 5 % of the text height/width (slight
  perspective), placed where it overlaps no earlier item;
* the photo is saved as JPEG quality 60-95.

Output: ``OUT_DIR/NNN_<photo>.jpg`` and beside each ``NNN_<photo>.json``::

    {"image": "000_000000000139.jpg", "source": "000000000139.jpg", "jpeg_quality": 83,
     "items": [{"text": "Fresh Coffee", "script": "en", "polygon": [[x, y] x 4], "font": "...",
                "size_px": 40, "angle_deg": -7.5}, ...]}

``polygon`` is the text's ink box (clockwise from the top-left of the text as read) after rotation and
perspective, in pixels of the saved JPEG. ``OUT_DIR/set.json`` lists the images and the generator settings.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import random
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("GLIMPSE_TEST_DATA", ROOT.parent / "shared" / "data"))
PHOTOS = DATA / "coco128" / "images"
GENERATOR_VERSION = 1

# Sign / shop / receipt / menu vocabulary. Single words and short phrases; phrases exercise the
# recogniser's (known, issue 15) habit of dropping the space between Latin words.
_ENGLISH_TEXT = """
exit entrance open closed push pull stop caution danger warning welcome sale discount free new
hot cold fresh coffee tea milk juice water beer wine bread cake pizza burger salad soup rice noodles
chicken beef pork fish egg cheese butter sugar salt pepper lemon orange apple banana cherry grape
menu order receipt total subtotal tax cash card change price amount quantity item date time
invoice balance payment thank you please sorry office hotel bank store market pharmacy hospital
station airport parking taxi bus train metro ticket gate platform arrival departure information
toilet restroom lobby elevator stairs floor room kitchen garden library museum school police fire
emergency private staff only keep out no smoking wet floor slow down one way dead end detour
left right north south east west street avenue road bridge park square center city downtown
monday tuesday wednesday thursday friday saturday sunday today tomorrow morning evening night
breakfast lunch dinner dessert special combo large small medium regular extra double single
sandwich pasta steak shrimp tofu curry dumplings bakery grill kitchen cafe restaurant bar
fitness salon barber laundry bookstore florist jewelry shoes clothing electronics repair service
delivery takeaway pickup reserved booking check call help support customer member loyalty points
welcome back happy birthday good luck best seller limited offer buy one get one half price
fresh daily open daily closed today opening hours last order all day breakfast happy hour
cash only no cash card only sold out coming soon now open grand opening under construction
authorized personnel fire exit emergency exit push to open pull to open mind the gap watch your step
do not enter no entry no parking no photos no pets no food no drinks quiet please thank you
"""

# The block above gives single words (>= 3 letters); these are kept whole as phrases.
_ENGLISH_PHRASES = [
    "thank you", "keep out", "no smoking", "wet floor", "slow down", "one way", "dead end",
    "staff only", "welcome back", "happy birthday", "good luck", "best seller", "limited offer",
    "buy one get one", "half price", "fresh daily", "open daily", "closed today", "opening hours",
    "last order", "all day breakfast", "happy hour", "cash only", "card only", "sold out",
    "coming soon", "now open", "grand opening", "under construction", "authorized personnel",
    "fire exit", "emergency exit", "push to open", "pull to open", "mind the gap", "watch your step",
    "do not enter", "no entry", "no parking", "no photos", "no pets", "no food", "no drinks",
    "quiet please", "fresh coffee", "hot chocolate", "green tea", "fried rice", "beef noodles",
    "chicken soup", "ice cream", "orange juice", "total amount", "cash payment", "card payment",
    "table 12", "gate 7", "platform 3", "room 204", "floor 2", "exit 4", "$12.50", "$3.99",
    "50% off", "20% off", "open 24 hours", "since 1998", "tel 555 0199",
]


def _english_words() -> list[str]:
    words = set(_ENGLISH_PHRASES)
    words.update(w for w in _ENGLISH_TEXT.split() if len(w) >= 3)
    return sorted(words)


_CHINESE_TEXT = """
出口 入口 营业中 欢迎光临 禁止吸烟 小心地滑 请勿停车 安全出口 紧急出口 洗手间 厕所 电梯 楼梯
停车场 地铁站 火车站 机场 售票处 候车室 问讯处 服务台 收银台 超市 药店 医院 银行 酒店 餐厅
咖啡 奶茶 绿茶 红茶 果汁 啤酒 矿泉水 面包 蛋糕 米饭 面条 饺子 包子 馒头 炒饭 炒面 牛肉面
鸡肉 牛肉 猪肉 鱼香肉丝 宫保鸡丁 麻婆豆腐 红烧肉 火锅 烧烤 小笼包 豆浆 油条 粥 汤 沙拉 披萨
汉堡 薯条 冰淇淋 水果 苹果 香蕉 西瓜 葡萄 橙子 草莓 菜单 点餐 外卖 打包 堂食 套餐 特价
新品 热销 推荐 招牌菜 今日特价 买一送一 半价 八折 九折 满减 优惠 会员 积分 发票 收据 小票
合计 总计 小计 金额 单价 数量 现金 找零 刷卡 微信支付 支付宝 谢谢惠顾 欢迎再来 营业时间
早餐 午餐 晚餐 夜宵 周一 周二 周三 周四 周五 周六 周日 今天 明天 上午 下午 全天营业
北京 上海 广州 深圳 南京 杭州 成都 武汉 西安 重庆 天津 苏州 人民路 中山路 解放路 建设路
东门 西门 南门 北门 一楼 二楼 三楼 地下室 办公室 会议室 教室 图书馆 博物馆 公园 广场 学校
派出所 邮局 加油站 便利店 书店 花店 理发店 洗衣店 眼镜店 手机维修 快递 电影院 体育馆 游泳池
请排队 请勿触摸 禁止入内 闲人免进 注意安全 当心触电 禁止拍照 保持安静 爱护环境 节约用水
请随手关门 小心台阶 正在施工 暂停营业 即将开业 盛大开业 新年快乐 生日快乐 恭喜发财 万事如意
"""
CHINESE = sorted(set(_CHINESE_TEXT.split()))

EN_FONTS = [
    ("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", None),
    ("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf", None),
    ("/usr/share/fonts/truetype/dejavu/DejaVuSerif.ttf", None),
    ("/usr/share/fonts/truetype/dejavu/DejaVuSansCondensed-Bold.ttf", None),
    ("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc", "SC"),
]
ZH_FONTS = [
    ("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc", "SC"),
    ("/usr/share/fonts/opentype/noto/NotoSansCJK-Bold.ttc", "SC"),
    ("/usr/share/fonts/opentype/noto/NotoSerifCJK-Regular.ttc", "SC"),
    ("/usr/share/fonts/opentype/noto/NotoSerifCJK-Bold.ttc", "SC"),
]
MIN_PX, MAX_PX = 12, 96
MAX_ANGLE = 20.0
PERSPECTIVE = 0.05      # corner jitter, as a fraction of the text box's height/width
MIN_CONTRAST = 110      # luminance difference (0-255) between text and the mean background under it
MARGIN = 4              # px kept free around every item and from the photo's border


@functools.cache
def _font_index(path: str, region: str | None) -> int:
    """The face index inside a .ttc whose family name ends with ``region`` (e.g. "SC"), 0 for a .ttf."""
    if region is None:
        return 0
    for index in range(16):
        try:
            family = ImageFont.truetype(path, 12, index=index).getname()[0]
        except OSError:
            break
        if family.endswith(f" {region}") and "Mono" not in family:
            return index
    raise SystemExit(f"no {region} face in {path}; install fonts-noto-cjk")


def check_fonts() -> None:
    """Exit with one line naming the missing font file (the set is only reproducible with these fonts)."""
    for path, _ in EN_FONTS + ZH_FONTS:
        if not Path(path).is_file():
            raise SystemExit(f"font {path} is missing: apt-get install -y fonts-dejavu-core fonts-noto-cjk")


def _homography(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """3x3 H with dst ~ H @ src for 4 point pairs (src, dst: float64 [4, 2])."""
    rows, rhs = [], []
    for (x, y), (u, v) in zip(src, dst, strict=True):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        rhs += [u, v]
    h = np.linalg.solve(np.array(rows, dtype=np.float64), np.array(rhs, dtype=np.float64))
    return np.append(h, 1.0).reshape(3, 3)


def _apply(h: np.ndarray, points: np.ndarray) -> np.ndarray:
    p = np.c_[points, np.ones(len(points))] @ h.T
    return p[:, :2] / p[:, 2:3]


def _luminance(rgb: np.ndarray) -> float:
    return float(np.mean(rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114))


def _text_colour(rng: random.Random, background: float) -> tuple[int, int, int]:
    for _ in range(200):
        colour = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
        if abs(_luminance(np.array(colour, dtype=np.float64)) - background) >= MIN_CONTRAST:
            return colour
    return (0, 0, 0) if background >= 128 else (255, 255, 255)


def _choose_text(rng: random.Random, script: str) -> str:
    if script == "zh":
        return rng.choice(CHINESE)
    text = rng.choice(_english_words())
    case = rng.random()
    if case < 0.3:
        return text.upper()
    if case < 0.6:
        return text.title()
    return text


def _place_item(rng: random.Random, photo: Image.Image, taken: list[tuple[float, float, float, float]],
                script: str) -> dict | None:
    """Render one text item onto ``photo`` (in place); its ground truth, or None when nothing fitted."""
    width, height = photo.size
    text = _choose_text(rng, script)
    font_path, region = rng.choice(ZH_FONTS if script == "zh" else EN_FONTS)
    size = rng.randint(MIN_PX, MAX_PX)
    angle = rng.uniform(-MAX_ANGLE, MAX_ANGLE)
    jitter = [rng.uniform(-PERSPECTIVE, PERSPECTIVE) for _ in range(8)]
    shifts = [(rng.random(), rng.random()) for _ in range(30)]
    colour_rng = random.Random(rng.random())
    while size >= MIN_PX:
        font = ImageFont.truetype(font_path, size, index=_font_index(font_path, region))
        left, top, right, bottom = font.getbbox(text)
        tw, th = right - left, bottom - top
        pad = max(2, size // 4)
        canvas_w, canvas_h = tw + 2 * pad, th + 2 * pad
        ink = np.array([[pad, pad], [pad + tw, pad], [pad + tw, pad + th], [pad, pad + th]], np.float64)
        # Rotate the ink box about its centre, then move each corner a little (perspective).
        centre = ink.mean(axis=0)
        rad = math.radians(angle)
        rot = np.array([[math.cos(rad), math.sin(rad)], [-math.sin(rad), math.cos(rad)]])
        quad = (ink - centre) @ rot.T
        quad += np.array(jitter, np.float64).reshape(4, 2) * np.array([tw, th], np.float64)
        span = quad.max(axis=0) - quad.min(axis=0)
        room = np.array([width, height], np.float64) - span - 2 * MARGIN
        if (room > 0).all():
            for fx, fy in shifts:
                offset = np.array([MARGIN + fx * room[0], MARGIN + fy * room[1]]) - quad.min(axis=0)
                placed = quad + offset
                x0, y0 = placed.min(axis=0) - MARGIN
                x1, y1 = placed.max(axis=0) + MARGIN
                if any(x0 < b[2] and b[0] < x1 and y0 < b[3] and b[1] < y1 for b in taken):
                    continue
                taken.append((x0, y0, x1, y1))
                region_px = np.asarray(photo)[int(max(y0, 0)):int(y1), int(max(x0, 0)):int(x1)]
                colour = _text_colour(colour_rng, _luminance(region_px.astype(np.float64)))
                layer = Image.new("RGBA", (canvas_w, canvas_h), (*colour, 0))
                ImageDraw.Draw(layer).text((pad - left, pad - top), text, font=font, fill=(*colour, 255))
                # The canvas's ink box maps onto `placed`; PIL wants the output->input mapping.
                h = _homography(ink, placed)
                inverse = np.linalg.inv(h)
                inverse /= inverse[2, 2]
                warped = layer.transform((width, height), Image.Transform.PERSPECTIVE,
                                         tuple(inverse.flatten()[:8]), Image.Resampling.BICUBIC)
                photo.paste(warped, (0, 0), warped)
                return {"text": text, "script": script,
                        "polygon": [[round(float(x), 1), round(float(y), 1)] for x, y in placed],
                        "font": f"{Path(font_path).name}{':' + region if region else ''}",
                        "size_px": size, "angle_deg": round(angle, 2)}
        size = int(size * 0.8)
    return None


def generate_one(source: Path, index: int, out_dir: Path, seed: int) -> dict:
    """Write one image + its ground truth JSON; returns the ground truth."""
    rng = random.Random(f"ocr-textset:{seed}:{source.name}")
    with Image.open(source) as im:
        photo = im.convert("RGB")
    count = rng.randint(1, 4)
    taken: list[tuple[float, float, float, float]] = []
    items = []
    for _ in range(count):
        item = _place_item(rng, photo, taken, rng.choice(("en", "zh")))
        if item is not None:
            items.append(item)
    quality = rng.randint(60, 95)
    name = f"{index:03d}_{source.stem}.jpg"
    photo.save(out_dir / name, "JPEG", quality=quality)
    truth = {"image": name, "source": source.name, "jpeg_quality": quality, "items": items}
    (out_dir / f"{index:03d}_{source.stem}.json").write_text(json.dumps(truth, ensure_ascii=False, indent=1))
    return truth


def generate(out_dir: Path, images: int = 128, seed: int = 15, photos: Path = PHOTOS) -> list[dict]:
    """Generate the first ``images`` photos of set (a) into ``out_dir``; returns their ground truth."""
    check_fonts()
    sources = sorted(photos.glob("*.jpg"))[:images]
    if not sources:
        raise SystemExit(f"no photos in {photos}: set GLIMPSE_TEST_DATA to the folder holding coco128/")
    out_dir.mkdir(parents=True, exist_ok=True)
    truths = [generate_one(src, i, out_dir, seed) for i, src in enumerate(sources)]
    manifest = {"generator": "benchmarks/ocr_textset.py", "version": GENERATOR_VERSION, "seed": seed,
                "photos": str(photos), "images": [t["image"] for t in truths]}
    (out_dir / "set.json").write_text(json.dumps(manifest, indent=1))
    return truths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--images", type=int, default=128)
    parser.add_argument("--seed", type=int, default=15)
    args = parser.parse_args(argv)
    truths = generate(args.out_dir, args.images, args.seed)
    items = [it for t in truths for it in t["items"]]
    zh = sum(it["script"] == "zh" for it in items)
    print(f"{len(truths)} images, {len(items)} text items ({len(items) - zh} en, {zh} zh) in {args.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
