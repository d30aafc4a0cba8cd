"""What the OpenAPI document says about links (links.py): the url field and the link error codes."""

from __future__ import annotations

URL_DESCRIPTION = ("a link: the page of a video on any site yt-dlp supports (TikTok, YouTube, Instagram, X, ...), "
                   "a direct media URL or an HLS playlist. Only an audio stream is downloaded, the smallest that "
                   "serves; a start time in the link (t=90, t=1m30s) is honoured. Public addresses only.")

LINK_ERRORS = {
    "403": "url_forbidden: the link, a redirect, or a request the site's page leads to points at a private, "
           "loopback or metadata address",
    "413": "too_large: the upload or the download is too large; too_long: the linked video is longer than the "
           "timeline limit",
    "415": "unsupported_media: not decodable as audio; no_audio: the video has no audio track",
    "422": "too_short: under 1 s of audio; login_required: the site needs a login; video_unavailable: the video "
           "is gone or private; unsupported_url: no video at that link and its site is not supported",
    "502": "url_fetch_failed: the link could not be downloaded",
    "504": "url_timeout: the site did not deliver the audio within the server's deadline",
}
