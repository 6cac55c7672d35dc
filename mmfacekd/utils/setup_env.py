"""Register every mmfacekd module and set the default scope."""
import datetime
import warnings

from mmengine import DefaultScope


def register_all_modules(init_default_scope: bool = True) -> None:
    """Import all mmfacekd modules so they register themselves.

    Args:
        init_default_scope (bool): Set the default scope to ``mmfacekd`` so
            un-prefixed types resolve in mmfacekd's registries first.
            Defaults to True.
    """
    import mmfacekd.datasets  # noqa: F401
    import mmfacekd.engine  # noqa: F401
    import mmfacekd.evaluation  # noqa: F401
    import mmfacekd.models  # noqa: F401

    if not init_default_scope:
        return
    current = DefaultScope.get_current_instance()
    if current is None:
        DefaultScope.get_instance('mmfacekd', scope_name='mmfacekd')
    elif current.scope_name != 'mmfacekd':
        warnings.warn(f'The current default scope "{current.scope_name}" is '
                      'not "mmfacekd"; a new scope is created for mmfacekd.')
        new_name = f'mmfacekd-{datetime.datetime.now()}'
        DefaultScope.get_instance(new_name, scope_name='mmfacekd')
