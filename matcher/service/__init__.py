"""The HTTP service: the aiohttp app and its routes, identify worker processes, the version hot
swap, admission control, URL fetching, the OpenAPI document, metrics and the static page.
"""
