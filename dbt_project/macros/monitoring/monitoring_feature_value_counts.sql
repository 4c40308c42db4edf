{% macro monitoring_feature_value_counts(relation, from_name, key_columns=['sk_id_curr', 'month', 'target'], only_features=none) %}
    {#-
        Unpivot the feature columns of `relation` into one row per (month, feature, value) with
        the number of rows holding that value. Text and boolean columns fill `value_cat`, the
        others `value_num`; NULL values form their own row. Counting per value instead of
        keeping one row per application keeps the long table small for discrete features.
        `only_features` (lowercase names), when given, limits the unpivot to those columns:
        each column costs a pass over `relation`.
        The column list is read from the warehouse when the model runs, so a feature added to
        the feature mart is monitored without editing this macro.
    -#}
    {%- set columns = adapter.get_columns_in_relation(relation) if execute else [] -%}
    {%- set ns = namespace(features=[]) -%}
    {%- for column in columns if column.name | lower not in key_columns
        and (only_features is none or column.name | lower in only_features) -%}
        {%- set ns.features = ns.features + [column] -%}
    {%- endfor -%}

    {%- if ns.features | length == 0 %}
    select
        cast(null as {{ dbt.type_string() }}) as month,
        cast(null as {{ dbt.type_string() }}) as feature,
        cast(null as {{ type_double() }}) as value_num,
        cast(null as {{ dbt.type_string() }}) as value_cat,
        cast(0 as {{ dbt.type_bigint() }}) as row_count
    where 1 = 0
    {%- endif %}

    {%- for column in ns.features %}
        {%- set quoted = adapter.quote(column.name) %}
        {%- set is_text = column.is_string() or column.dtype | lower in ('boolean', 'bool') %}
    select
        month,
        '{{ column.name | lower }}' as feature,
        {%- if is_text %}
        cast(null as {{ type_double() }}) as value_num,
        cast({{ quoted }} as {{ dbt.type_string() }}) as value_cat,
        {%- else %}
        cast({{ quoted }} as {{ type_double() }}) as value_num,
        cast(null as {{ dbt.type_string() }}) as value_cat,
        {%- endif %}
        count(*) as row_count
    from {{ from_name }}
    group by month, {{ quoted }}
    {% if not loop.last %}union all{% endif %}
    {%- endfor %}
{% endmacro %}
