"""The stream bot's words: go-live posts from the BotConfig's templates, and ``!status``.

The BotConfig is the example's, as synced into a real store; the homelab's state for
``!status`` is read from that store. The twitchio bot is built for real (never connected) to
check that its ``!status`` answers moderators only.
"""

from __future__ import annotations

import pytest

from bots import overview, stream, twitch_bot
from nebula import errors
from nebula.resources.bot_config import BotConfig
from nebula.secrets import EnvironmentSecrets
from tests.bots.conftest import GUILD, Homelab

LIVE = stream.GoLive(
    platform="twitch",
    channel="ExampleCreator",
    streamer="ExampleCreator",
    title="Racking the new GPU box",
    url="https://twitch.tv/examplecreator",
    game="Science & Technology",
    viewers=42,
)
ANNOUNCEMENTS = "912345678901234573"


@pytest.fixture
def config(homelab: Homelab) -> BotConfig:
    found = homelab.bot_config()
    assert found is not None
    return found


def test_a_twitch_go_live_is_posted_with_its_template_and_role(config: BotConfig) -> None:
    assert stream.go_live_posts(config, LIVE) == [
        stream.Post(
            guild=GUILD,
            channel=ANNOUNCEMENTS,
            text="🔴 ExampleCreator is live on Twitch: **Racking the new GPU box** "
            "(Science & Technology) https://twitch.tv/examplecreator",
            mention_role="Stream Pings",
        )
    ]


def test_each_platform_gets_the_post_that_names_it(config: BotConfig) -> None:
    youtube = stream.GoLive(
        platform="youtube",
        channel="@examplecreator",
        streamer="Example Creator",
        title="Homelab Q&A",
        url="https://youtube.com/live/abc",
    )

    [post] = stream.go_live_posts(config, youtube)

    assert (
        post.text
        == "📺 New YouTube stream from Example Creator: Homelab Q&A https://youtube.com/live/abc"
    )
    # No role on this post: the guild's streamNotifications role is pinged.
    assert post.mention_role == "Stream Pings"


def test_a_channel_the_botconfig_does_not_watch_posts_nothing(config: BotConfig) -> None:
    other = stream.GoLive(
        platform="twitch", channel="someoneelse", streamer="x", title="t", url="u"
    )

    assert stream.go_live_posts(config, other) == []


def test_stream_notifications_switched_off_in_the_guild_silence_its_go_live_posts(
    config: BotConfig,
) -> None:
    document = config.model_dump(mode="json", by_alias=True, exclude_none=True)
    document["spec"]["discord"]["guilds"][0]["features"]["streamNotifications"]["enabled"] = False

    assert stream.go_live_posts(BotConfig.model_validate(document), LIVE) == []


def test_status_answers_moderators_in_one_line_and_nobody_else(
    config: BotConfig, homelab: Homelab
) -> None:
    state = overview.overview(homelab.store)
    twitch = stream.platform_of(config, "twitch", "#ExampleCreator")
    kick = stream.platform_of(config, "kick", "examplecreator")

    answer = stream.status_answer(platform=twitch, moderator=True, state=state)

    assert answer is not None and "\n" not in answer
    assert answer.startswith(f"Homelab: {state.objects} resources, ")
    [synced] = [source for source in state.sources if source.key.name == "local"]
    assert f"local@{overview.short(synced.revision)}" in answer
    assert stream.status_answer(platform=twitch, moderator=False, state=state) is None
    # Kick chat has moderatorsOnly: false.
    assert stream.status_answer(platform=kick, moderator=False, state=state) == answer
    assert stream.status_answer(platform=None, moderator=True, state=state) is None


async def test_the_twitch_bot_answers_status_to_a_moderator_only(
    config: BotConfig, homelab: Homelab
) -> None:
    credentials = twitch_bot.TwitchCredentials("client", "secret", "1234", "token")
    bot = twitch_bot.StreamBot(credentials=credentials, store=homelab.store, sender=None)
    try:
        assert await bot.status_answer("examplecreator", moderator=True) is None  # no config yet
        assert await bot.apply(config, config.metadata.generation) == []  # offline: no subscribing

        moderator = await bot.status_answer("examplecreator", moderator=True)
        viewer = await bot.status_answer("examplecreator", moderator=False)
        elsewhere = await bot.status_answer("someoneelse", moderator=True)
    finally:
        await bot.close()

    assert moderator is not None and moderator.startswith("Homelab: ")
    assert viewer is None and elsewhere is None


def test_twitch_credentials_come_from_secrets_and_a_missing_one_is_named(
    config: BotConfig,
) -> None:
    assert config.spec.stream is not None
    twitch = config.spec.stream.platforms[0]
    environment = {
        "NEBULA_SECRET_STREAM_BOT_TWITCH_OAUTH": "oauth-token",
        "NEBULA_SECRET_STREAM_BOT_CLIENT_ID": "client",
        "NEBULA_SECRET_STREAM_BOT_BOT_ID": "1234",
    }

    with pytest.raises(errors.ConfigurationError) as refused:
        twitch_bot.TwitchCredentials.read(
            twitch, EnvironmentSecrets(environment), namespace="default"
        )

    assert str(refused.value) == (
        "secret 'stream-bot' lacks what the Twitch bot needs: "
        "set NEBULA_SECRET_STREAM_BOT_CLIENT_SECRET"
    )
    complete = EnvironmentSecrets(
        environment | {"NEBULA_SECRET_STREAM_BOT_CLIENT_SECRET": "s3cret"}
    )
    found = twitch_bot.TwitchCredentials.read(twitch, complete, namespace="default")
    assert (found.token, found.client_id, found.bot_id) == ("oauth-token", "client", "1234")
    assert "oauth-token" not in repr(found) and "s3cret" not in repr(found)
