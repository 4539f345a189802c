"""Regenerate ``protocol/vectors/vectors.json`` (the golden frames) from the curated cases below.

Run ``.venv/bin/python tests/protocol/generate_vectors.py`` only when the protocol changes on
purpose: the test suite checks the committed file against the codec both ways, so a diff in the
JSON is a wire change that every client must hear about.

The file's conventions are in ``CONVENTIONS`` below (and in SPEC.md, "Golden vectors").
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgpack

from pubquiz_engine.protocol import (
    DecodeError,
    Direction,
    Message,
    decode,
    encode,
)
from pubquiz_engine.protocol import messages as m

CONVENTIONS = [
    "hex: the frame's bytes, lowercase hex. A very large frame is given as hex_chunks instead:"
    " a list of [hex, times] pairs, concatenated in order, each repeated times.",
    "message: the decoded message as its wire map, keys in canonical order. A JSON number with"
    " a fraction or an exponent is a msgpack float64; any other number is an integer. null is nil.",
    "valid: encode(message) gives exactly hex, and decode(hex) gives exactly message.",
    "decode_only: valid but not canonical frames (keys out of order, nil fields left out, wide"
    " integers); decode(hex) gives message, and encoding that gives canonical_hex.",
    "invalid: decode(hex) fails with error; rid, when not null, is the request id the error"
    " exposes (the server answers error{rid} and keeps the connection unless the code closes it).",
]

VECTORS_PATH = Path(__file__).resolve().parents[2] / "protocol" / "vectors" / "vectors.json"
C2S = Direction.CLIENT_TO_SERVER
S2C = Direction.SERVER_TO_CLIENT

QUIZ = {
    "title": "Friday Night Quiz",
    "rounds": [
        {
            "title": "General knowledge",
            "questions": [
                {
                    "kind": "single",
                    "prompt": "Which planet is known as the Red Planet?",
                    "choices": ["Venus", "Mars", "Jupiter"],
                    "answer": 1,
                    "points": 10,
                    "time_limit": 20,
                }
            ],
        }
    ],
}

def _game_states() -> dict[str, m.State]:
    """``state`` messages as the engine builds them (``server.views.state``) at four points of
    a small team quiz: every key of SPEC section 11, for a player and for a host, with a joker,
    a stake and the rounds list; and after the question closed, its real deadline (issue 24.4:
    ``deadline_ms`` as in the ``question`` event, never 0); and on a slide, ``slide`` as in
    the ``slide`` event."""
    from pubquiz_engine.game import (
        AdjustScore,
        CloseQuestion,
        GameSession,
        Join,
        Mode,
        Next,
        PlaceWager,
        PlayJoker,
        Reveal,
        SessionOptions,
        Start,
        SubmitAnswer,
        load_quiz_data,
    )
    from pubquiz_engine.server import views

    quiz = load_quiz_data({"title": "Friday Night Quiz", "rounds": [
        {"title": "General knowledge", "items": [
            {"kind": "single", "prompt": "Which planet is known as the Red Planet?",
             "choices": ["Venus", "Mars", "Jupiter"], "answer": "Mars", "points": 10,
             "time_limit": 20}]},
        {"title": "Music", "wager": True, "joker": False, "items": [
            {"kind": "slide", "title": "Round 2: Music", "text": "Stakes are in. Phones ready."},
            {"kind": "text", "prompt": "Who recorded Abbey Road?", "answer": "The Beatles"}]},
        {"title": "Finale", "multiplier": 2, "items": [
            {"kind": "truefalse", "prompt": "Crows: a murder?", "answer": True}]},
    ]}, source="vectors")
    game = GameSession(quiz, SessionOptions(mode=Mode.TEAM))
    t0 = 1767225600.0
    ada = game.apply(Join("Ada", "The Quizzly Bears"), t0)[0].participant  # type: ignore[attr-defined]
    bob = game.apply(Join("Bob", "Quiz Team Aguilera"), t0)[0].participant  # type: ignore[attr-defined]
    game.apply(AdjustScore(ada, 40, "warm-up round"), t0)
    game.apply(PlaceWager(ada, 1, 20), t0)
    game.apply(PlayJoker(ada, 2), t0)
    game.apply(Start(), t0)
    game.apply(SubmitAnswer(ada, 0, 1, 3), t0 + 4)

    def render(role: str, participant: int | None) -> dict[str, Any]:
        return views.state(game, role=role, participant=participant, code="K7QX",
                           connected=(ada,))

    out = {"state": m.State(seq=57, state=render("player", ada))}
    game.apply(CloseQuestion(), t0 + 6)
    out["state_after_close"] = m.State(seq=60, state=render("player", bob))
    game.apply(Reveal(), t0 + 8)
    out["state_host"] = m.State(seq=62, state=render("host", None))
    game.apply(Next(), t0 + 10)  # the round's summary
    game.apply(Next(), t0 + 12)  # round 2 begins with its slide
    out["state_slide"] = m.State(seq=64, state=render("player", bob))
    return out


STATES = _game_states()


# (name, direction, message): every message type at least once.
VALID: list[tuple[str, Direction, Message]] = [
    ("join_team", C2S, m.Join(rid=1, code="K7QX", name="Ada", team="The Quizzly Bears")),
    ("join_solo_unicode", C2S, m.Join(rid=2, code="K7QX", name="Zoë 🦉", team=None)),
    ("resume", C2S, m.Resume(rid=3, token="rt_3f9a1c7e5b2d4a60", last_seq=41)),
    ("resume_with_epoch", C2S, m.Resume(rid=4, token="rt_3f9a1c7e5b2d4a60", last_seq=41,
                                        epoch=2)),
    ("host_with_epoch", C2S, m.Host(rid=2, code="K7QX", token="ht_9c1d0e2f", last_seq=17,
                                    epoch=3)),
    ("host", C2S, m.Host(rid=1, code="K7QX", token="ht_9c1d0e2f", last_seq=None)),
    ("watch", C2S, m.Watch(rid=1, code="K7QX", last_seq=12)),
    (
        "create_session_inline",
        C2S,
        m.CreateSession(
            rid=1,
            key="op-key-1",
            quiz_path=None,
            quiz=QUIZ,
            mode="team",
            options={"close_when_all_answered": True},
        ),
    ),
    (
        "create_session_path",
        C2S,
        m.CreateSession(
            rid=2,
            key="op-key-1",
            quiz_path="quizzes/friday.toml",
            quiz=None,
            mode="solo",
            options=None,
        ),
    ),
    ("answer_single", C2S, m.Answer(rid=10, q=0, value=1)),
    ("answer_truefalse", C2S, m.Answer(rid=11, q=1, value=True)),
    ("answer_multiple", C2S, m.Answer(rid=12, q=2, value=[0, 2, 3])),
    ("answer_ordering", C2S, m.Answer(rid=13, q=3, value=[3, 0, 2, 1])),
    ("answer_text", C2S, m.Answer(rid=14, q=4, value="Ada Lovelace")),
    ("answer_numeric_float", C2S, m.Answer(rid=15, q=5, value=1.5)),
    ("answer_numeric_int", C2S, m.Answer(rid=16, q=6, value=1969)),
    ("answer_numeric_float_whole", C2S, m.Answer(rid=17, q=6, value=3.0)),
    ("answer_negative_int", C2S, m.Answer(rid=18, q=7, value=-40)),
    ("joker", C2S, m.Joker(rid=20, round=2)),
    ("wager", C2S, m.Wager(rid=21, round=3, amount=25)),
    ("leave", C2S, m.Leave(rid=22)),
    ("start", C2S, m.Start(rid=30)),
    ("next", C2S, m.Next(rid=31)),
    ("close", C2S, m.Close(rid=32)),
    ("extend", C2S, m.Extend(rid=33, seconds=15)),
    ("pause", C2S, m.Pause(rid=34)),
    ("unpause", C2S, m.Unpause(rid=35)),
    ("reveal_command", C2S, m.Reveal(rid=36)),
    ("skip", C2S, m.Skip(rid=37)),
    ("show_leaderboard_overall", C2S, m.ShowLeaderboard(rid=38, round=None)),
    ("show_leaderboard_round", C2S, m.ShowLeaderboard(rid=39, round=1)),
    ("mark", C2S, m.Mark(rid=40, q=4, participant=7, correct=True)),
    ("adjust", C2S, m.Adjust(rid=41, participant=7, delta=-5, reason="phone use")),
    ("kick", C2S, m.Kick(rid=42, participant=9)),
    ("end", C2S, m.End(rid=43)),
    (
        "generate",
        C2S,
        m.Generate(rid=44, key="operator-key", code="K7MWPX", topic="90s music", count=10,
                   kind="choice", difficulty="medium", language=None, round_title=None),
    ),
    ("ping", C2S, m.Ping(rid=2147483647)),
    (
        "welcome_player",
        S2C,
        m.Welcome(
            rid=1,
            role="player",
            code="K7QX",
            epoch=1,
            seq=4,
            participant=7,
            name="Ada",
            team="The Quizzly Bears",
            token="rt_3f9a1c7e5b2d4a60",
            replay="events",
        ),
    ),
    (
        "welcome_host",
        S2C,
        m.Welcome(
            rid=1,
            role="host",
            code="K7QX",
            epoch=2,
            seq=120,
            participant=None,
            name=None,
            team=None,
            token=None,
            replay="state",
        ),
    ),
    ("session_created", S2C, m.SessionCreated(rid=1, code="K7QX", host_token="ht_9c1d0e2f")),
    ("ok", S2C, m.Ok(rid=30)),
    ("pong", S2C, m.Pong(rid=2147483647)),
    (
        "generated",
        S2C,
        m.Generated(rid=44, round=5, added=9, dropped=2,
                    notes=("2 questions dropped: duplicate choices", "served from the cache")),
    ),
    ("answer_ack", S2C, m.AnswerAck(rid=10, q=0)),
    (
        "error_with_rid",
        S2C,
        m.ErrorReply(
            rid=10, code="question_closed", message="question 0 is closed", retryable=False
        ),
    ),
    (
        "error_without_rid",
        S2C,
        m.ErrorReply(rid=None, code="shutting_down", message="server restarting", retryable=True),
    ),
    (
        "error_retry_after",
        S2C,
        m.ErrorReply(rid=12, code="unavailable", message="the database is not answering",
                     retryable=True, retry_after_ms=1500),
    ),
    ("redirect", S2C, m.Redirect(rid=1, code="K7QX", url="wss://node2.quiz.example/ws")),
    ("you", S2C, m.You(rank=2, score=40, round_score=10)),
    ("you_unranked", S2C, m.You(rank=None, score=0, round_score=None)),
    ("result", S2C, m.Result(q=0, correct=True, points=10, score=40, answered=True)),
    ("result_no_answer", S2C, m.Result(q=0, correct=False, points=0, score=40, answered=False)),
    ("state", S2C, STATES["state"]),
    ("state_after_close", S2C, STATES["state_after_close"]),
    ("state_host", S2C, STATES["state_host"]),
    ("state_slide", S2C, STATES["state_slide"]),
    (
        "player_joined",
        S2C,
        m.PlayerJoined(seq=5, participant=7, name="Ada", team="The Quizzly Bears"),
    ),
    ("player_left", S2C, m.PlayerLeft(seq=6, participant=7)),
    ("player_kicked", S2C, m.PlayerKicked(seq=7, participant=9)),
    (
        "question",
        S2C,
        m.Question(
            seq=12,
            q=0,
            round=0,
            number=1,
            kind="single",
            prompt="Which planet is known as the Red Planet?",
            choices=("Venus", "Mars", "Jupiter"),
            media=None,
            points=10,
            time_limit_ms=20000,
            deadline_ms=1767225620000,
            speed_bonus=5,
        ),
    ),
    (
        "question_text_with_media",
        S2C,
        m.Question(
            seq=30,
            q=4,
            round=1,
            number=2,
            kind="text",
            prompt="Who is this?",
            choices=None,
            media="https://cdn.quiz.example/p/42.jpg",
            points=20,
            time_limit_ms=30000,
            deadline_ms=1767226000000,
        ),
    ),
    ("slide", S2C, m.Slide(seq=2, title="Round 1", body="General knowledge. Jokers now!")),
    ("answer_count", S2C, m.AnswerCount(seq=13, q=0, answered=3, total=12)),
    ("answered", S2C, m.Answered(seq=14, q=0, participant=7)),
    ("closed", S2C, m.Closed(seq=15, q=0)),
    ("paused", S2C, m.Paused(seq=16, remaining_ms=8500)),
    ("unpaused", S2C, m.Unpaused(seq=17, deadline_ms=1767225640000)),
    ("extended", S2C, m.Extended(seq=18, q=0, deadline_ms=1767225655000)),
    ("reveal_single", S2C, m.Revealed(seq=19, q=0, correct=1, distribution=(2, 9, 1),
                                      explanation="Iron oxide dust makes it red.")),
    (
        "reveal_text",
        S2C,
        m.Revealed(seq=31, q=4, correct=("Ada Lovelace", "Lovelace"), distribution=None),
    ),
    ("reveal_numeric", S2C, m.Revealed(seq=32, q=5, correct=1.5, distribution=None)),
    (
        "leaderboard",
        S2C,
        m.Leaderboard(
            seq=20,
            round=None,
            teams=True,
            top=((1, 3, "The Quizzly Bears", 50), (2, 1, "Quiz Team Aguilera", 40)),
        ),
    ),
    (
        "leaderboard_ties",
        S2C,
        m.Leaderboard(
            seq=23,
            round=None,
            teams=False,
            top=((1, 7, "Ada", 50), (2, 3, "Bob", 40), (2, 9, "Cy", 40), (4, 2, "Di", 30)),
        ),
    ),
    ("round_summary", S2C, m.RoundSummary(seq=21, round=0, title="General knowledge")),
    ("score_adjusted", S2C, m.ScoreAdjusted(seq=22, participant=7, delta=-5, reason="phone use")),
    ("started", S2C, m.Started(seq=1)),
    ("round_started", S2C, m.RoundStarted(seq=2, round=0, title="General knowledge")),
    ("joker_played", S2C, m.JokerPlayed(seq=8, participant=7, round=2)),
    ("wager_placed", S2C, m.WagerPlaced(seq=9, participant=7, round=1, amount=20)),
    ("marked", S2C, m.Marked(seq=33, q=4, participant=7, correct=True)),
    ("scores", S2C, m.Scores(seq=20, reason="reveal", q=0, scores=((3, 10), (7, 50), (9, 0)))),
    ("ended", S2C, m.Ended(seq=99, reason="finished")),
]


def _p(obj: Any) -> str:
    return bytes(msgpack.packb(obj)).hex()


# (name, direction, hex, message as wire map, why): valid but not canonical.
DECODE_ONLY: list[tuple[str, Direction, str, str]] = [
    (
        "keys_out_of_order",
        C2S,
        _p({"value": 2, "q": 0, "rid": 10, "t": "answer"}),
        "decoders must not depend on key order",
    ),
    (
        "nullable_left_out",
        C2S,
        _p({"t": "join", "rid": 1, "code": "K7QX", "name": "Ada"}),
        "a nullable field left out is nil",
    ),
    (
        "resume_epoch_left_out",
        C2S,
        _p({"t": "resume", "rid": 3, "token": "rt_3f9a1c7e5b2d4a60", "last_seq": 41}),
        "a resume without epoch (clients before it existed): the epoch is unknown",
    ),
    (
        "small_int_as_uint32",
        C2S,
        "83a174a6657874656e64a3726964ce00000021a77365636f6e6473cd000f",
        "any msgpack integer width is accepted; encoders use the shortest",
    ),
]

# (name, direction, hex or chunks, error code, rid, why)
Frame = str | list[tuple[str, int]]
INVALID: list[tuple[str, Direction, Frame, str, int | None, str]] = [
    (
        "frame_too_large",
        C2S,
        [("83a174a470696e67a372696401a3706164da", 1), ("ffff", 1), ("78", 65535)],
        "frame_too_large",
        None,
        "over 64 KiB and not a create_session",
    ),
    ("empty", C2S, "", "malformed_frame", None, "no bytes at all"),
    ("truncated", C2S, "82a174a470696e67a3726964", "malformed_frame", None, "map cut short"),
    ("reserved_byte", C2S, "c1", "malformed_frame", None, "0xc1 is never used"),
    (
        "trailing_bytes",
        C2S,
        _p({"t": "ping", "rid": 1}) + "c0",
        "malformed_frame",
        None,
        "one frame holds exactly one value",
    ),
    (
        "invalid_utf8",
        C2S,
        "83a174a470696e67a372696401a178a2fffe",
        "malformed_frame",
        1,
        "str values must be UTF-8 (the rid before the bad value is still read)",
    ),
    (
        "declared_huge_string_short_body",
        C2S,
        "82a174a470696e67a3726964dbffffffff78",
        "malformed_frame",
        None,
        "a length the body does not hold: refused without allocating",
    ),
    (
        "declared_huge_string_after_rid",
        C2S,
        "83a174a470696e67a372696403a178dbffffffff78",
        "malformed_frame",
        3,
        "a truncated frame still gives the rid read before the cut",
    ),
    (
        "declared_huge_string_hides_rid",
        C2S,
        "83a174a470696e67a178dbffffffff78a372696403",
        "malformed_frame",
        None,
        "the declared length swallows the rest, rid included: no rid",
    ),
    (
        "declared_huge_array",
        C2S,
        "84a174a6616e73776572a372696401a17100a576616c7565ddffffffff",
        "malformed_frame",
        1,
        "a count the frame does not hold is malformed_frame before the array limit: refused "
        "before allocating",
    ),
    (
        "declared_huge_map",
        C2S,
        "dfffffffffa174a470696e67",
        "malformed_frame",
        None,
        "a count the frame does not hold (an entry is at least 2 bytes), whatever the limit",
    ),
    (
        "array_over_limit",
        C2S,
        _p({"t": "answer", "rid": 3, "q": 0, "value": [0] * 1001}),
        "limit_exceeded",
        3,
        "1,001 elements, all there: over max_array_len",
    ),
    (
        "declared_huge_ext32",
        C2S,
        "83a174a470696e67a372696402a178c9ffffffff05",
        "malformed_frame",
        2,
        "a 4 GiB ext32 header in a short frame: not held, so malformed_frame like str32 and "
        "bin32 (not unsupported_type)",
    ),
    (
        "declared_huge_bin32",
        C2S,
        "83a174a470696e67a372696402a178c6ffffffff",
        "malformed_frame",
        2,
        "a 4 GiB bin32 header in a short frame: malformed_frame",
    ),
    (
        "first_fault_non_string_key_then_truncation",
        C2S,
        "83a174a470696e67a37269640501a3",
        "invalid_message",
        5,
        "the non-string key (byte 13) comes before the cut (byte 14): the first fault wins",
    ),
    (
        "first_fault_bin_then_non_string_key",
        C2S,
        "84a174a470696e67a372696406a178c4010001c0",
        "unsupported_type",
        6,
        "a bin value (byte 15) before a non-string key (byte 18): the bin wins",
    ),
    (
        "first_fault_depth_under_unknown_field",
        C2S,
        [("83a174a470696e67a372696403a56578747261", 1), ("91", 16), ("c0", 1)],
        "limit_exceeded",
        3,
        "depth is a decoder limit: an unknown field nested 17 deep is limit_exceeded, not "
        "invalid_message (decoding faults come before message faults)",
    ),
    (
        "first_fault_long_string_then_bin",
        C2S,
        "84" + _p("t") + _p("answer") + _p("rid") + _p(4) + _p("value") + "da1001"
        + "78" * 4097 + _p("b") + "c40100",
        "limit_exceeded",
        4,
        "a str over the limit, then a bin: the str comes first in byte order",
    ),
    (
        "string_over_limit",
        C2S,
        _p({"t": "answer", "rid": 5, "q": 0, "value": "x" * 4097}),
        "limit_exceeded",
        5,
        "a string over 4096 bytes; the error still carries the rid",
    ),
    (
        "string_over_limit_before_rid",
        C2S,
        _p({"t": "join", "code": "K7QX", "name": "n" * 10_000, "team": None, "rid": 12}),
        "limit_exceeded",
        12,
        "the over-long string is stepped over by its declared length to reach the rid after it",
    ),
    (
        "nested_10000_deep",
        C2S,
        [("83a174a470696e67a372696401a178", 1), ("91", 10000), ("c0", 1)],
        "limit_exceeded",
        1,
        "msgpack's own 1024-level stack refuses it",
    ),
    (
        "nested_over_depth_limit",
        C2S,
        _p(
            {
                "t": "create_session",
                "rid": 8,
                "key": "k",
                "mode": "solo",
                "quiz": {"a": [[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]},
            }
        ),
        "limit_exceeded",
        8,
        "17 levels: over the depth limit of 16",
    ),
    (
        "name_too_long",
        C2S,
        _p({"t": "join", "rid": 4, "code": "K7QX", "name": "n" * 65, "team": None}),
        "limit_exceeded",
        4,
        "name is at most 64 characters",
    ),
    (
        "bin_value",
        C2S,
        "84a174a6616e73776572a372696401a17100a576616c7565c4026869",
        "unsupported_type",
        1,
        "no bin values in pubquiz.v1",
    ),
    (
        "empty_bin_value",
        C2S,
        "84a174a6616e73776572a372696409a17100a576616c7565c400",
        "unsupported_type",
        9,
        "not even empty ones",
    ),
    (
        "ext_value",
        C2S,
        "84a174a6616e73776572a372696401a17100a576616c7565d40501",
        "unsupported_type",
        1,
        "no ext values",
    ),
    (
        "timestamp_value",
        C2S,
        "84a174a6616e73776572a372696401a17100a576616c7565d6ff00000001",
        "unsupported_type",
        1,
        "the timestamp ext is an ext too",
    ),
    ("not_a_map", C2S, _p(["ping", 1]), "invalid_message", None, "a frame is a map"),
    ("missing_type", C2S, _p({"rid": 3}), "invalid_message", 3, 'no "t"'),
    ("type_not_string", C2S, _p({"t": 1, "rid": 3}), "invalid_message", 3, '"t" is a str'),
    (
        "integer_key",
        C2S,
        "82a174a470696e6701c0",
        "invalid_message",
        None,
        "map keys are strings",
    ),
    (
        "duplicate_key",
        C2S,
        "83a174a470696e67a372696401a372696402",
        "invalid_message",
        None,
        "a key may appear once; a repeated rid is nobody's: the error has rid nil",
    ),
    (
        "duplicate_other_key",
        C2S,
        "84a174a470696e67a372696401a17801a17802",
        "invalid_message",
        1,
        "a key other than rid repeated: the rid stands",
    ),
    (
        "duplicate_key_before_unknown_type",
        C2S,
        "83a174a46e6f7065a372696401a174a46e6f7065",
        "invalid_message",
        1,
        "a repeated key is a decoding fault: it comes before the check of the type",
    ),
    (
        "invalid_utf8_in_type",
        C2S,
        "82a174a2fffea372696404",
        "malformed_frame",
        4,
        "invalid UTF-8 in the t value: the rid after it is still read (t is stepped over)",
    ),
    (
        "not_a_map_first_byte",
        C2S,
        "92",
        "invalid_message",
        None,
        "the first byte says array: not a map, before the cut",
    ),
    (
        "extra_field",
        C2S,
        _p({"t": "ping", "rid": 6, "admin": True}),
        "invalid_message",
        6,
        "no fields beyond the catalogue",
    ),
    (
        "missing_field",
        C2S,
        _p({"t": "answer", "rid": 6, "q": 0}),
        "invalid_message",
        6,
        "value is required",
    ),
    (
        "wrong_type",
        C2S,
        _p({"t": "answer", "rid": 6, "q": "0", "value": 1}),
        "invalid_message",
        6,
        "q is an integer",
    ),
    (
        "bool_is_not_int",
        C2S,
        _p({"t": "kick", "rid": 6, "participant": True}),
        "invalid_message",
        6,
        "booleans are not integers",
    ),
    (
        "nan_answer",
        C2S,
        "84a174a6616e73776572a372696406a17105a576616c7565cb7ff8000000000000",
        "invalid_message",
        6,
        "numbers must be finite",
    ),
    (
        "infinite_answer",
        C2S,
        "84a174a6616e73776572a372696406a17105a576616c7565cb7ff0000000000000",
        "invalid_message",
        6,
        "numbers must be finite",
    ),
    (
        "mixed_answer_list",
        C2S,
        _p({"t": "answer", "rid": 6, "q": 2, "value": [0, "b"]}),
        "invalid_message",
        6,
        "a choice list holds integers only",
    ),
    (
        "rid_out_of_range",
        C2S,
        _p({"t": "ping", "rid": 2**31}),
        "invalid_message",
        None,
        "rid is 0..2^31-1 (and so cannot be echoed)",
    ),
    (
        "extend_too_long",
        C2S,
        _p({"t": "extend", "rid": 6, "seconds": 601}),
        "invalid_message",
        6,
        "seconds is 1..600",
    ),
    (
        "create_session_both_sources",
        C2S,
        _p(
            {
                "t": "create_session",
                "rid": 6,
                "key": "k",
                "quiz_path": "a.toml",
                "quiz": {},
                "mode": "solo",
            }
        ),
        "invalid_message",
        6,
        "exactly one of quiz_path, quiz",
    ),
    (
        "unknown_type",
        C2S,
        _p({"t": "launch_rockets", "rid": 7}),
        "unknown_message",
        7,
        "the server answers error{rid: 7} and keeps the connection",
    ),
    (
        "server_type_from_client",
        C2S,
        _p({"t": "welcome", "rid": 7}),
        "unknown_message",
        7,
        "a server message is unknown in the client direction",
    ),
    (
        "event_seq_zero",
        S2C,
        _p({"t": "closed", "seq": 0, "q": 1}),
        "invalid_message",
        None,
        "event seq starts at 1",
    ),
    (
        "state_with_nan",
        S2C,
        "83a174a57374617465a373657101a5737461746581a178cb7ff8000000000000",
        "invalid_message",
        None,
        "free-form maps hold finite numbers only",
    ),
    (
        "unknown_phase_kind",
        S2C,
        _p(
            {
                "t": "question",
                "seq": 1,
                "q": 0,
                "round": 0,
                "number": 1,
                "kind": "essay",
                "prompt": "?",
                "choices": None,
                "media": None,
                "points": 1,
                "time_limit_ms": 1000,
                "deadline_ms": 1,
            }
        ),
        "invalid_message",
        None,
        "kind is one of the six question kinds",
    ),
]


def frame_bytes(frame: Frame) -> bytes:
    """The bytes of a vector's frame, from ``hex`` or ``hex_chunks``."""
    if isinstance(frame, str):
        return bytes.fromhex(frame)
    return b"".join(bytes.fromhex(part) * times for part, times in frame)


def _jsonable(value: Any) -> Any:
    # Tuples (how messages store sequences) are JSON arrays.
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def build() -> dict[str, Any]:
    valid = []
    for name, direction, message in VALID:
        data = encode(message)
        assert decode(data, direction=direction) == message, name
        valid.append(
            {
                "name": name,
                "direction": str(direction),
                "hex": data.hex(),
                "message": _jsonable(message.to_wire()),
            }
        )
    decode_only = []
    for name, direction, hex_frame, why in DECODE_ONLY:
        message = decode(bytes.fromhex(hex_frame), direction=direction)
        decode_only.append(
            {
                "name": name,
                "direction": str(direction),
                "hex": hex_frame,
                "message": _jsonable(message.to_wire()),
                "canonical_hex": encode(message).hex(),
                "why": why,
            }
        )
    invalid = []
    for name, direction, frame, code, rid, why in INVALID:
        try:
            decode(frame_bytes(frame), direction=direction)
        except DecodeError as exc:
            assert (exc.code, exc.rid) == (code, rid), (name, exc.code, exc.rid, exc.message)
        else:
            raise AssertionError(f"{name} decoded")
        entry: dict[str, Any] = {"name": name, "direction": str(direction)}
        if isinstance(frame, str):
            entry["hex"] = frame
        else:
            entry["hex_chunks"] = [[part, times] for part, times in frame]
        entry.update({"error": code, "rid": rid, "why": why})
        invalid.append(entry)
    return {
        "protocol": "pubquiz.v1",
        "conventions": CONVENTIONS,
        "valid": valid,
        "decode_only": decode_only,
        "invalid": invalid,
    }


def render() -> str:
    return json.dumps(build(), indent=1, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    VECTORS_PATH.write_text(render(), encoding="utf-8")
    print(f"wrote {VECTORS_PATH}")
