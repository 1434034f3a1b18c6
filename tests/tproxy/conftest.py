from tests.fixtures.netns import netns_factory

__all__ = ["netns_factory"]
