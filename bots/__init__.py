"""The Discord and Twitch bots: they turn chat commands into change requests and read state."""
