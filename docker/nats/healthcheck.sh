#!/bin/bash
# Healthy when the monitoring endpoint reports JetStream ready (no curl in the image: bash's /dev/tcp).
exec 3<>/dev/tcp/127.0.0.1/8222 || exit 1
printf 'GET /healthz?js-enabled-only=true HTTP/1.0\r\nHost: localhost\r\n\r\n' >&3
head -n 1 <&3 | grep -q ' 200 '
