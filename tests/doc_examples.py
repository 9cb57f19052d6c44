"""The example requests of the gateway doc (../shared/pixazo-pixverse-api.txt), as (model, input)."""

from __future__ import annotations

from typing import Any

DOC_EXAMPLES: list[tuple[str, dict[str, Any]]] = [
    (
        "pixverse-v6-text-to-video",
        {
            "prompt": "A cat sitting by a window watching birds outside, warm afternoon sunlight, cinematic",
            "negative_prompt": "blurry, low quality, pixelated",
            "aspect_ratio": "16:9",
            "resolution": "720p",
            "duration": 5,
            "style": "cyberpunk",
            "generate_audio_switch": True,
        },
    ),
    (
        "pixverse-v6-image-to-video",
        {
            "prompt": "A gentle snowfall begins around the snow-covered tree",
            "resolution": "720p",
            "duration": 5,
            "image_url": "https://pub-582b7213209642b9b995c96c95a30381.r2.dev/f1.png",
        },
    ),
    (
        "pixverse-v6-image-to-video",
        {
            "prompt": "A gentle snowfall begins around the snow-covered tree",
            "resolution": "720p",
            "duration": 5,
            "negative_prompt": "blurry, low quality, low resolution, pixelated, noisy, grainy, out of focus",
            "image_url": "https://pub-582b7213209642b9b995c96c95a30381.r2.dev/f1.png",
        },
    ),
    (
        "pixverse-c1-text-to-video",
        {
            "prompt": "A cat sitting by a window watching birds outside, warm afternoon sunlight, cinematic",
            "negative_prompt": "blurry, low quality, pixelated",
            "aspect_ratio": "16:9",
            "resolution": "720p",
            "duration": 5,
            "style": "cyberpunk",
            "generate_audio_switch": True,
        },
    ),
    (
        "pixverse-c1-image-to-video",
        {
            "prompt": "A woman warrior with her hammer walking with her glacier wolf, cinematic camera move",
            "image_url": "https://pub-582b7213209642b9b995c96c95a30381.r2.dev/Image.jpeg",
            "resolution": "720p",
            "duration": 5,
            "generate_audio_switch": True,
        },
    ),
    (
        "pixverse",
        {
            "prompt": "A golden sunset timelapse over a coastal city, waves crashing against the pier",
            "aspect_ratio": "16:9",
            "resolution": "720p",
            "duration": 5,
        },
    ),
    (
        "pixverse",
        {
            "prompt": "A golden sunset timelapse over a coastal city, waves crashing against the pier",
            "aspect_ratio": "16:9",
            "resolution": "720p",
            "duration": 5,
            "negative_prompt": "blurry, low quality, low resolution, pixelated, noisy, grainy",
        },
    ),
    (
        "pixverse-i2v",
        {
            "prompt": "A fierce dragon breathing fire across a stormy night sky",
            "resolution": "720p",
            "duration": "5",
            "image_url": "https://imagesai.appypie.com/7686410/ZU2sxXLmgRF6dgSktn9o_017731475651251.png",
        },
    ),
    (
        "pixverse-i2v",
        {
            "prompt": "A fierce dragon breathing fire across a stormy night sky",
            "resolution": "720p",
            "duration": "5",
            "negative_prompt": "blurry, low quality, low resolution, pixelated, noisy, grainy",
            "image_url": "https://imagesai.appypie.com/7686410/ZU2sxXLmgRF6dgSktn9o_017731475651251.png",
        },
    ),
]
