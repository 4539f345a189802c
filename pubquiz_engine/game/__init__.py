"""The quiz game core: quiz files, the session state machine, scoring and leaderboards.

This package is pure (DESIGN.md section 3): it imports no trio, no socket, no database or
Redis client, reads no clock and draws no random numbers. The server calls it synchronously,
passing the time in, and turns the events it returns into wire messages; the persister stores
``AnswerAccepted`` and ``ScoresChanged``. A test checks the imports stay pure.

Modules: ``quiz`` (the model), ``loader`` (TOML/JSON files and validation), ``matching``
(answer validation and judging), ``names`` (player and team names), ``scoring`` (the points
formula and ranking), ``commands`` and ``events`` (what goes in and comes out), ``session``
(the state machine and its snapshots).
"""

from pubquiz_engine.game import commands, events
from pubquiz_engine.game.commands import (
    AddRound,
    AdjustScore,
    CloseQuestion,
    Command,
    End,
    Extend,
    Join,
    Kick,
    Leave,
    Mark,
    Next,
    Pause,
    PlaceWager,
    PlayJoker,
    Reveal,
    ShowLeaderboard,
    Skip,
    Start,
    SubmitAnswer,
    Unpause,
)
from pubquiz_engine.game.events import Event, event_to_data, event_type
from pubquiz_engine.game.loader import (
    FORMAT_VERSION,
    load_quiz,
    load_quiz_data,
    quiz_to_data,
    sample_quiz_path,
)
from pubquiz_engine.game.quiz import NumericMode, Question, QuestionKind, Quiz, Round, Slide
from pubquiz_engine.game.scoring import Standing
from pubquiz_engine.game.session import (
    SNAPSHOT_FORMAT,
    Answer,
    CorrectView,
    GameSession,
    Mode,
    Participant,
    Phase,
    QState,
    QuestionView,
    SessionOptions,
    Team,
)

__all__ = [
    "FORMAT_VERSION",
    "SNAPSHOT_FORMAT",
    "AddRound",
    "AdjustScore",
    "Answer",
    "CloseQuestion",
    "Command",
    "CorrectView",
    "End",
    "Event",
    "Extend",
    "GameSession",
    "Join",
    "Kick",
    "Leave",
    "Mark",
    "Mode",
    "Next",
    "NumericMode",
    "Participant",
    "Pause",
    "Phase",
    "PlaceWager",
    "PlayJoker",
    "QState",
    "Question",
    "QuestionKind",
    "QuestionView",
    "Quiz",
    "Reveal",
    "Round",
    "SessionOptions",
    "ShowLeaderboard",
    "Skip",
    "Slide",
    "Standing",
    "Start",
    "SubmitAnswer",
    "Team",
    "Unpause",
    "commands",
    "event_to_data",
    "event_type",
    "events",
    "load_quiz",
    "load_quiz_data",
    "quiz_to_data",
    "sample_quiz_path",
]
