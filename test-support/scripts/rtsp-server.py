#!/usr/bin/python3
"""A throwaway RTSP server for the camera tests (GStreamer's gst-rtsp-server).

Run with Debian's /usr/bin/python3: the GStreamer bindings (python3-gi,
gir1.2-gst-rtsp-server-1.0) load only there.

    rtsp-server.py --port P [--fps 25] [--gop 25] [--kbps 500] [--user U --password W]
                   [--loop-file FILE.h264]

Mounts (all live test video, 320x240, closed GOPs so every keyframe is an IDR):
    /h264    H.264 (x264), shared by all clients
    /h264b   a second H.264 stream, shared
    /h265    H.265 (x265, open-gop off: IDR keyframes, since retina 0.4 does not count
             CRA pictures as keyframes)
    /jumpy   H.264 packetised by this script, its RTP timestamps jumping an hour forward
             and back every 12 s (not shared)
    /onvif   H.264 plus an ONVIF analytics metadata track (vnd.onvif.metadata), not shared:
             each client gets the scripted documents described in SCRIPT from the start
    /file    (with --loop-file) a pre-encoded H.264 elementary stream in a loop, no
             encoding at all (benchmarks)

Prints "READY <port>" on stdout once listening.
"""

import argparse
import os
import random
import struct
import sys
import threading
import time

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

# The ONVIF script: (rule, topic kind, object class or None) in order. The expected
# counts per rule are what the tests assert:
#   Lane1Crossing: 12 crossings by vehicles (+1 by a Human, not counted)
#   Lane2Crossing: 7 crossings by vehicles
#   Lane3Count:    counter initialised at 100, then 101..105: 5 vehicles
SCRIPT = []
for i in range(12):
    SCRIPT.append(("Lane1Crossing", "crossed", "Vehicle"))
    if i < 7:
        SCRIPT.append(("Lane2Crossing", "crossed", "Car" if i % 2 else "Vehicle"))
    if i == 3:
        SCRIPT.append(("Lane1Crossing", "crossed", "Human"))
SCRIPT.insert(0, ("Lane3Count", "counter-init", 100))
for n in range(101, 106):
    SCRIPT.append(("Lane3Count", "counter", n))
# A document that is not XML, to be refused and counted without harm.
SCRIPT.insert(5, ("garbage", "garbage", None))


def utc_now():
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".%03dZ" % int((t % 1) * 1000)


def document(step, object_id):
    rule, kind, arg = step
    if kind == "garbage":
        return b"<tt:MetadataStream><not closed"
    ns = ('xmlns:tt="http://www.onvif.org/ver10/schema" '
          'xmlns:wsnt="http://docs.oasis-open.org/wsn/b-2" '
          'xmlns:tns1="http://www.onvif.org/ver10/topics"')
    now = utc_now()
    if kind == "crossed":
        frame = (
            '<tt:VideoAnalytics><tt:Frame UtcTime="%s"><tt:Object ObjectId="%d">'
            "<tt:Appearance><tt:Class><tt:Type Likelihood=\"0.9\">%s</tt:Type></tt:Class>"
            "</tt:Appearance></tt:Object></tt:Frame></tt:VideoAnalytics>" % (now, object_id, arg)
        )
        topic = "tns1:RuleEngine/LineDetector/Crossed"
        data = '<tt:SimpleItem Name="ObjectId" Value="%d"/>' % object_id
        op = "Changed"
    else:
        frame = ""
        topic = "tns1:RuleEngine/CountAggregation/Counter"
        data = '<tt:SimpleItem Name="Count" Value="%d"/>' % arg
        op = "Initialized" if kind == "counter-init" else "Changed"
    return (
        '<?xml version="1.0" encoding="UTF-8"?><tt:MetadataStream %s>%s<tt:Event>'
        "<wsnt:NotificationMessage><wsnt:Topic Dialect=\"http://www.onvif.org/ver10/tev/"
        "topicExpression/ConcreteSet\">%s</wsnt:Topic><wsnt:Message>"
        '<tt:Message UtcTime="%s" PropertyOperation="%s"><tt:Source>'
        '<tt:SimpleItem Name="VideoSourceConfigurationToken" Value="VideoSourceToken"/>'
        '<tt:SimpleItem Name="Rule" Value="%s"/></tt:Source><tt:Data>%s</tt:Data>'
        "</tt:Message></wsnt:Message></wsnt:NotificationMessage></tt:Event></tt:MetadataStream>"
        % (ns, frame, topic, now, op, rule, data)
    ).encode()


class MetadataFeeder:
    """Pushes the ONVIF script as RTP packets (RFC 3550 header built here: no Debian
    package payloads ONVIF metadata) into an appsrc once the client plays."""

    MTU_PAYLOAD = 1000

    def __init__(self, appsrc):
        self.appsrc = appsrc
        self.started = False
        self.seq = random.randint(0, 0xFFFF)
        self.ssrc = random.randint(1, 0xFFFFFFFF)
        self.t0 = time.monotonic()
        appsrc.connect("need-data", self.on_need_data)

    def on_need_data(self, _src, _length):
        if not self.started:
            self.started = True
            threading.Thread(target=self.run, daemon=True).start()

    def packet(self, payload, marker):
        ts = int((time.monotonic() - self.t0) * 90000) & 0xFFFFFFFF
        header = struct.pack("!BBHII", 0x80, (0x80 if marker else 0) | 107, self.seq, ts, self.ssrc)
        self.seq = (self.seq + 1) & 0xFFFF
        return header + payload

    def run(self):
        # Give the client time to be reading before the first document.
        time.sleep(1.0)
        for i, step in enumerate(SCRIPT):
            doc = document(step, 1000 + i)
            chunks = [doc[j:j + self.MTU_PAYLOAD] for j in range(0, len(doc), self.MTU_PAYLOAD)]
            for k, chunk in enumerate(chunks):
                buf = Gst.Buffer.new_wrapped(self.packet(chunk, k == len(chunks) - 1))
                if self.appsrc.emit("push-buffer", buf) != Gst.FlowReturn.OK:
                    return
            time.sleep(0.15)


def access_units(path):
    """Splits an H.264 Annex B file written with access unit delimiters (x264 aud=1) into
    its access units."""
    data = open(path, "rb").read()
    aud = b"\x00\x00\x00\x01\x09"
    starts = []
    i = data.find(aud)
    while i >= 0:
        starts.append(i)
        i = data.find(aud, i + 1)
    if not starts:
        sys.exit("%s has no access unit delimiters (encode with -x264-params aud=1)" % path)
    return [data[a:b] for a, b in zip(starts, starts[1:] + [len(data)])]


class LoopFeeder:
    """Pushes pre-encoded access units in a loop at the frame rate, with timestamps: no
    encoding at all, so the server costs next to nothing."""

    def __init__(self, appsrc, units, fps):
        self.appsrc = appsrc
        self.units = units
        self.fps = fps
        self.started = False
        appsrc.connect("need-data", self.on_need_data)

    def on_need_data(self, _src, _length):
        if not self.started:
            self.started = True
            threading.Thread(target=self.run, daemon=True).start()

    def run(self):
        step = Gst.SECOND // self.fps
        t0 = time.monotonic()
        n = 0
        while True:
            buf = Gst.Buffer.new_wrapped(self.units[n % len(self.units)])
            buf.pts = n * step
            buf.duration = step
            if self.appsrc.emit("push-buffer", buf) != Gst.FlowReturn.OK:
                return
            n += 1
            delay = t0 + n / self.fps - time.monotonic()
            if delay > 0:
                time.sleep(delay)


def encode_h264(path, fps, gop, kbps, seconds):
    """Encodes test video into an H.264 byte stream with access unit delimiters."""
    pipeline = Gst.parse_launch(
        "videotestsrc num-buffers=%d pattern=ball ! video/x-raw,width=320,height=240,framerate=%d/1 ! "
        "x264enc speed-preset=ultrafast bitrate=%d key-int-max=%d bframes=0 aud=true ! "
        "video/x-h264,profile=baseline,stream-format=byte-stream ! filesink location=%s"
        % (seconds * fps, fps, kbps, gop, path)
    )
    pipeline.set_state(Gst.State.PLAYING)
    pipeline.get_bus().timed_pop_filtered(Gst.CLOCK_TIME_NONE, Gst.MessageType.EOS | Gst.MessageType.ERROR)
    pipeline.set_state(Gst.State.NULL)


def nal_units(au):
    """The NAL units of an Annex B access unit, without start codes."""
    out = []
    i = 0
    starts = []
    while True:
        j = au.find(b"\x00\x00\x01", i)
        if j < 0:
            break
        starts.append(j + 3)
        i = j + 3
    for k, st in enumerate(starts):
        end = starts[k + 1] - 3 if k + 1 < len(starts) else len(au)
        nal = au[st:end].rstrip(b"\x00")
        if nal:
            out.append(nal)
    return out


class JumpyFeeder:
    """H.264 over RTP packetised here (RFC 6184 single NAL units and FU-A), so that the RTP
    timestamps can misbehave like some cameras': an hour forward at frame 100 of every 300,
    and back to an earlier value at frame 200."""

    def __init__(self, appsrc, units, fps):
        self.appsrc = appsrc
        self.units = units
        self.fps = fps
        self.started = False
        self.seq = random.randint(0, 0xFFFF)
        self.ssrc = random.randint(1, 0xFFFFFFFF)
        appsrc.connect("need-data", self.on_need_data)

    def on_need_data(self, _src, _length):
        if not self.started:
            self.started = True
            threading.Thread(target=self.run, daemon=True).start()

    def send(self, payload, ts, marker):
        header = struct.pack("!BBHII", 0x80, (0x80 if marker else 0) | 96, self.seq, ts & 0xFFFFFFFF, self.ssrc)
        self.seq = (self.seq + 1) & 0xFFFF
        return self.appsrc.emit("push-buffer", Gst.Buffer.new_wrapped(header + payload)) == Gst.FlowReturn.OK

    def run(self):
        step = 90000 // self.fps
        ts = random.randint(0, 1 << 30)
        t0 = time.monotonic()
        n = 0
        while True:
            if n % 300 == 100:
                ts += 3600 * 90000
            elif n % 300 == 200:
                ts -= 7200 * 90000
            nals = [x for x in nal_units(self.units[n % len(self.units)]) if x[0] & 0x1F != 9]
            for k, nal in enumerate(nals):
                last = k == len(nals) - 1
                if len(nal) <= 1200:
                    if not self.send(nal, ts, last):
                        return
                    continue
                head, body = nal[0], nal[1:]
                chunks = [body[j:j + 1200] for j in range(0, len(body), 1200)]
                for c, chunk in enumerate(chunks):
                    fu_ind = (head & 0xE0) | 28
                    fu_head = (head & 0x1F) | (0x80 if c == 0 else 0) | (0x40 if c == len(chunks) - 1 else 0)
                    if not self.send(bytes([fu_ind, fu_head]) + chunk, ts, last and c == len(chunks) - 1):
                        return
            n += 1
            ts += step
            delay = t0 + n / self.fps - time.monotonic()
            if delay > 0:
                time.sleep(delay)


def video_launch(args, codec):
    src = (
        "videotestsrc is-live=true pattern=ball ! "
        "video/x-raw,width=320,height=240,framerate=%d/1 ! " % args.fps
    )
    if codec == "h265":
        enc = (
            "x265enc tune=zerolatency speed-preset=ultrafast bitrate=%d key-int-max=%d "
            'option-string="open-gop=0:min-keyint=%d:bframes=0:repeat-headers=1" ! '
            "video/x-h265,profile=main ! rtph265pay name=pay0 pt=96 config-interval=-1"
            % (args.kbps, args.gop, args.gop)
        )
    else:
        enc = (
            "x264enc tune=zerolatency speed-preset=ultrafast bitrate=%d key-int-max=%d bframes=0 ! "
            "video/x-h264,profile=baseline ! rtph264pay name=pay0 pt=96 config-interval=-1"
            % (args.kbps, args.gop)
        )
    return src + enc


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--fps", type=int, default=25)
    p.add_argument("--gop", type=int, default=25)
    p.add_argument("--kbps", type=int, default=500)
    p.add_argument("--user")
    p.add_argument("--password")
    p.add_argument("--loop-file")
    args = p.parse_args()

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    mounts = server.get_mount_points()

    if args.user:
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, "user")
        basic = GstRtspServer.RTSPAuth.make_basic(args.user, args.password)
        auth.add_basic(basic, token)
        server.set_auth(auth)

    def factory(launch, shared):
        f = GstRtspServer.RTSPMediaFactory()
        f.set_launch("( %s )" % launch)
        f.set_shared(shared)
        if args.user:
            perm = GstRtspServer.RTSPPermissions()
            perm.add_permission_for_role("user", "media.factory.access", True)
            perm.add_permission_for_role("user", "media.factory.construct", True)
            f.set_permissions(perm)
        return f

    mounts.add_factory("/h264", factory(video_launch(args, "h264"), True))
    mounts.add_factory("/h264b", factory(video_launch(args, "h264"), True))
    mounts.add_factory("/h265", factory(video_launch(args, "h265"), True))

    onvif = factory(
        video_launch(args, "h264")
        + " appsrc name=pay1 is-live=true format=time do-timestamp=true block=true max-bytes=4000000 "
        "caps=\"application/x-rtp,media=application,clock-rate=90000,"
        "encoding-name=VND.ONVIF.METADATA,payload=107\"",
        False,
    )
    feeders = []

    def on_configure(_factory, media):
        appsrc = media.get_element().get_by_name_recurse_up("pay1")
        feeders.append(MetadataFeeder(appsrc))

    onvif.connect("media-configure", on_configure)
    mounts.add_factory("/onvif", onvif)

    jumpy_file = os.path.join(os.getcwd(), "jumpy.h264")
    encode_h264(jumpy_file, args.fps, args.gop, args.kbps, 12)
    jumpy_units = access_units(jumpy_file)
    jumpy = factory(
        "appsrc name=pay0 is-live=true format=time do-timestamp=true block=true max-bytes=4000000 "
        "caps=\"application/x-rtp,media=video,clock-rate=90000,encoding-name=H264,payload=96\"",
        False,
    )

    def on_jumpy_configure(_factory, media):
        appsrc = media.get_element().get_by_name_recurse_up("pay0")
        feeders.append(JumpyFeeder(appsrc, jumpy_units, args.fps))

    jumpy.connect("media-configure", on_jumpy_configure)
    mounts.add_factory("/jumpy", jumpy)

    if args.loop_file:
        units = access_units(args.loop_file)
        launch = (
            "appsrc name=src is-live=true format=time block=true max-bytes=8000000 "
            "caps=\"video/x-h264,stream-format=byte-stream,alignment=au,framerate=%d/1\" ! "
            "h264parse ! rtph264pay name=pay0 pt=96 config-interval=-1" % args.fps
        )
        looped = factory(launch, True)

        def on_file_configure(_factory, media):
            appsrc = media.get_element().get_by_name_recurse_up("src")
            feeders.append(LoopFeeder(appsrc, units, args.fps))

        looped.connect("media-configure", on_file_configure)
        mounts.add_factory("/file", looped)

    if server.attach(None) == 0:
        print("cannot listen on port %d" % args.port, file=sys.stderr)
        sys.exit(1)
    print("READY %d" % args.port, flush=True)
    loop = GLib.MainLoop()
    try:
        loop.run()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
